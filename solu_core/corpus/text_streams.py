"""Text to record: files or JSONL read and tokenized into one token stream with document starts, and
the stream's hash.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
import numpy as np
from store.errors import CorpusError
from solu_core.corpus.sources import _jsonl_doc, _SourceStats, _walk
from solu_core.corpus.folder import TokenSplit


@dataclass
class TextStream:
    """Documents read from ``--text`` paths and tokenized into one stream, ready to cut into contexts."""

    split: TokenSplit  # the token stream; doc_starts True at each document's separator token
    sources: list[dict]  # per path: kind, files, documents, bytes, skipped binary / non-UTF-8 / empty
    n_docs: int  # documents in the stream (fewer than read when max_tokens cut it short)
    sha256: str  # over the tokens and document starts: names the exact stream recorded


def stream_sha256(tokens: np.ndarray, doc_starts: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(tokens, dtype="<i4").tobytes())
    h.update(np.ascontiguousarray(doc_starts, dtype=np.uint8).tobytes())
    return h.hexdigest()


def read_text_stream(paths: list[str | Path], tokenizer, separator_id: int, jsonl_field: str = "text",
                     max_tokens: int | None = None, progress: bool = False) -> TextStream:
    """Read files, folders and .jsonl files (in the order given; folders sorted), skip binary and
    non-UTF-8 files (counted), and tokenize every document with ``tokenizer`` (a tokenizers.Tokenizer,
    no special tokens added) as ``[separator_id] + ids``. Reads files only until ``max_tokens`` are reached
    (so 1M tokens of a 10 GB folder read only what they take; the sources' file counts are of the files read)."""
    for p in paths:
        if not os.path.lexists(Path(p).expanduser()) or not Path(p).expanduser().exists():
            raise CorpusError(f"--text {p} does not exist; pass existing files, folders or .jsonl files")
    stats: list[_SourceStats] = []
    pieces = _text_pieces([Path(p).expanduser().resolve() for p in paths], jsonl_field, stats)
    first = next(pieces, None)  # the user's text, read as far as it is needed, in pieces of bounded size
    if first is None:
        skipped = [sum(getattr(s, k) for s in stats) for k in ("skipped_binary", "skipped_non_utf8", "skipped_special")]
        raise CorpusError(f"no text to record in {', '.join(map(str, paths))} (skipped {skipped[0]} binary, "
                          f"{skipped[1]} non-UTF-8 and {skipped[2]} special files: FIFOs, devices, sockets); pass "
                          "UTF-8 text files, folders or .jsonl files")
    stream = _tokenize_pieces(itertools.chain([first], pieces), tokenizer, separator_id, max_tokens, progress)
    sources = [{"path": s.path, "kind": s.kind, "files": s.n_files, "skipped_binary": s.skipped_binary,
                "skipped_non_utf8": s.skipped_non_utf8, "skipped_empty": s.skipped_empty,
                "skipped_special": s.skipped_special} for s in stats]
    stream.sources = sources
    return stream


# Text given to `record --text` is read and tokenized in bounded memory: a file is read in blocks, and a
# document is tokenized in pieces of at most PIECE_CHARS characters, cut at the last whitespace before that
# (a 200 MB line is 200 pieces, not one 200 MB string in the tokenizer, which took 23.5 GB). Documents shorter
# than PIECE_CHARS (every ordinary file) are tokenized whole, as before.
PIECE_CHARS = 1 << 20
READ_BLOCK = 1 << 20  # bytes read from a file at a time
SMALL_FILE = 4 << 20  # a file whose text fits in this many bytes is checked whole before any of it is used
MAX_JSONL_LINE = 64 << 20  # a JSONL line must be parsed whole: longer lines are refused


def _cut_pieces(buf: str, final: bool) -> tuple[list[str], str]:
    """(whole pieces cut off the front of ``buf``, what is left); with ``final`` nothing is left."""
    out = []
    while len(buf) > PIECE_CHARS or (final and buf):
        if len(buf) <= PIECE_CHARS:
            out.append(buf)
            return out, ""
        cut = max(buf.rfind(" ", PIECE_CHARS // 2, PIECE_CHARS), buf.rfind("\n", PIECE_CHARS // 2, PIECE_CHARS))
        cut = cut + 1 if cut > 0 else PIECE_CHARS
        out.append(buf[:cut])
        buf = buf[cut:]
    return out, buf


def _file_pieces(path: Path, st: _SourceStats) -> Iterator[str]:
    """The text of one file in pieces (nothing when it is binary, not UTF-8, empty or not a regular file:
    counted). A file up to SMALL_FILE is checked whole first, as the corpus builder does; in a larger one a
    decode error ends the file there (counted as non-UTF-8)."""
    import codecs
    import gzip

    if not path.is_file():  # FIFO, device, socket: opening or reading it could block or never end
        st.skipped_special += 1
        return
    try:
        f = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror}; check its permissions or leave it out") from e
    st.n_files += 1
    dec = codecs.getincrementaldecoder("utf-8")()
    with f:
        try:
            data = f.read(8192)
        except (OSError, EOFError):
            st.skipped_binary += 1
            return
        if b"\0" in data:
            st.skipped_binary += 1
            return
        held: list[str] = []  # pieces of the first SMALL_FILE bytes, kept until the file is known good
        seen, buf, streaming = 0, "", False
        while True:
            final = not data
            try:
                buf += dec.decode(data, final=final)
            except UnicodeDecodeError:
                st.skipped_non_utf8 += 1
                return
            except (OSError, EOFError):  # a damaged .gz
                st.skipped_binary += 1
                return
            pieces, buf = _cut_pieces(buf, final)
            if streaming:
                yield from pieces
            else:
                held += pieces
            if final:
                break
            seen += len(data)
            if not streaming and seen > SMALL_FILE:
                streaming = True
                yield from held
                held = []
            try:
                data = f.read(READ_BLOCK)
            except (OSError, EOFError):
                st.skipped_binary += 1
                return
    if not streaming:
        if not "".join(held).strip():
            st.skipped_empty += 1
            return
        yield from held


def _jsonl_pieces(path: Path, field_name: str, st: _SourceStats) -> Iterator[tuple[bool, str]]:
    if not path.is_file():
        st.skipped_special += 1
        return
    st.n_files += 1
    with open(path, "rb") as f:  # line by line: a JSONL dump can be larger than memory
        i = 0
        while True:
            raw = f.readline(MAX_JSONL_LINE + 1)
            if not raw:
                break
            i += 1
            if len(raw) > MAX_JSONL_LINE and not raw.endswith(b"\n"):
                raise CorpusError(f"{path}:{i} is a line of more than {MAX_JSONL_LINE >> 20} MB; a JSONL document "
                                  "is read whole, so split it into several lines (or pass it as a text file)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{i} is not UTF-8 (byte {e.start} of the line); JSONL sources must be "
                                  f"UTF-8") from e
            doc = _jsonl_doc(path, i, line, field_name, 0, st)
            if doc is not None:
                pieces, _ = _cut_pieces(doc.text, True)
                for j, piece in enumerate(pieces):
                    yield j == 0, piece


def _text_pieces(paths: list[Path], jsonl_field: str, stats: list[_SourceStats]) -> Iterator[tuple[bool, str]]:
    """(starts a document, text) for every piece of the files, folders and .jsonl files at ``paths``, in
    order (folders sorted); one _SourceStats per path appended to ``stats`` as it is reached."""
    for p in paths:
        kind = "jsonl" if p.is_file() and p.suffix == ".jsonl" else ("folder" if p.is_dir() else "file")
        st = _SourceStats(path=str(p), kind=kind)
        stats.append(st)
        for f in (_walk(p) if p.is_dir() else iter([p])):
            if f.suffix == ".jsonl":
                yield from _jsonl_pieces(f, jsonl_field, st)
                continue
            n = 0
            for n, piece in enumerate(_file_pieces(f, st), 1):
                yield n == 1, piece
            st.n_docs += n > 0


def _tokenize_pieces(pieces: Iterable[tuple[bool, str]], tokenizer, separator_id: int, max_tokens: int | None,
                     progress: bool) -> TextStream:
    """``tokenize_documents`` over (starts a document, text) pieces: each document is ``[separator_id]`` and
    the ids of its pieces; batches of at most 64 pieces and 4 * PIECE_CHARS characters; stops after the
    batch that reaches ``max_tokens``."""
    from store.progress import progress_bar

    parts: list[np.ndarray] = []
    doc_starts: list[int] = []  # index into parts of each document's first part
    n = 0
    it = iter(pieces)
    bar = progress_bar(total=max_tokens, desc="tokenizing", unit="tok", unit_scale=True, enabled=progress)
    pending = next(it, None)
    while pending is not None and (max_tokens is None or n < max_tokens):
        batch, chars = [], 0
        while pending is not None and len(batch) < 64 and chars < 4 * PIECE_CHARS:
            batch.append(pending)
            chars += len(pending[1])
            pending = next(it, None)
        for (start, _), enc in zip(batch, tokenizer.encode_batch([t for _, t in batch], add_special_tokens=False)):
            ids = enc.ids
            if start or not parts:
                doc_starts.append(len(parts))
                ids = [separator_id] + ids
            parts.append(np.asarray(ids, dtype=np.int32))  # half the memory of int64 while the text is read
            n += len(parts[-1])
            bar.update(len(parts[-1]))
    bar.close()
    if not parts:
        raise CorpusError("no documents to record: the list of texts is empty")
    tokens = np.concatenate(parts, dtype=np.int64)  # [n]
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    starts = np.zeros(len(tokens), dtype=bool)
    starts[offsets[doc_starts]] = True
    return TextStream(TokenSplit(tokens, starts), [], len(doc_starts), stream_sha256(tokens, starts))


def tokenize_documents(texts: Iterable[str], tokenizer, separator_id: int, max_tokens: int | None = None,
                       progress: bool = False) -> TextStream:
    """Tokenize documents in order into one stream of ``[separator_id] + ids`` per document (no other
    special tokens), in batches of 64 documents, stopping after the batch that reaches ``max_tokens``
    (documents after it are never taken from ``texts``, which may be a lazy iterator)."""
    from store.progress import progress_bar

    parts: list[np.ndarray] = []
    n = 0
    it = iter(texts)
    bar = progress_bar(total=max_tokens, desc="tokenizing", unit="tok", unit_scale=True, enabled=progress)
    while max_tokens is None or n < max_tokens:
        batch = list(itertools.islice(it, 64))
        if not batch:
            break
        for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
            parts.append(np.asarray([separator_id] + enc.ids, dtype=np.int64))
            n += len(parts[-1])
            bar.update(len(parts[-1]))
    bar.close()
    if not parts:
        raise CorpusError("no documents to record: the list of texts is empty")
    tokens = np.concatenate(parts)  # [n]
    starts = np.zeros(len(tokens), dtype=bool)
    starts[np.cumsum([0] + [len(p) for p in parts[:-1]])] = True
    return TextStream(TokenSplit(tokens, starts), [], len(parts), stream_sha256(tokens, starts))
