"""Text to record: files or JSONL read and tokenized into one token stream with document starts, and
the stream's hash.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
import numpy as np
from store.errors import CorpusError
from solu_core.corpus.config import CorpusConfig
from solu_core.corpus.sources import _SourceStats, _iter_docs
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
        if not Path(p).expanduser().exists():
            raise CorpusError(f"--text {p} does not exist; pass existing files, folders or .jsonl files")
    stats: list[_SourceStats] = []
    docs = _iter_docs(CorpusConfig(sources=[str(p) for p in paths], include_stdlib=False, jsonl_field=jsonl_field,
                                   skip_generated=False), stats)  # the user's text, read as far as it is needed
    first = next(docs, None)
    if first is None:
        skipped = sum(s.skipped_binary for s in stats), sum(s.skipped_non_utf8 for s in stats)
        raise CorpusError(f"no text to record in {', '.join(map(str, paths))} (skipped {skipped[0]} binary and "
                          f"{skipped[1]} non-UTF-8 files); pass UTF-8 text files, folders or .jsonl files")
    texts = (d.text for d in itertools.chain([first], docs))
    stream = tokenize_documents(texts, tokenizer, separator_id, max_tokens, progress)
    sources = [{"path": s.path, "kind": s.kind, "files": s.n_files, "skipped_binary": s.skipped_binary,
                "skipped_non_utf8": s.skipped_non_utf8, "skipped_empty": s.skipped_empty} for s in stats]
    stream.sources = sources
    return stream


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
