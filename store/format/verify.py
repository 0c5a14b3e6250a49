"""`neurobrowse verify`: read every chunk of a store and check it against its checksum and its marker.

For each per-token array (token ids, document starts, one dense array per hook) every chunk must
have a completion marker (in a finished store), a file of the right size, a Crc32c that matches its
bytes, and the checksum its marker recorded (a chunk moved to another chunk's place fails that). The
tokenizer, the logit effects and each hook's index are checked file by file the same way.

``repair`` makes the advised commands work: it clears the markers of bad recorded chunks and the
store's ``complete`` flag (so the store's record command writes exactly those chunks again), and
drops a damaged index (so ``neurobrowse index`` builds it again). Nothing good is removed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store import schema
from store.format import chunkio, seal
from store.errors import StoreError
from store.format.manifest import validate_manifest


@dataclass
class ArrayReport:
    """What verify found in one array (or one index): chunks checked and the bad ones with why."""

    name: str
    kind: str  # "recorded", "index", "tokenizer", "logit"
    checked: int = 0
    bad: dict[str, str] = field(default_factory=dict)  # chunk key -> reason
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.bad


@dataclass
class VerifyReport:
    path: Path
    arrays: list[ArrayReport]
    bytes_read: int
    seconds: float
    record_command: str
    repaired: bool
    dense: bool = True  # the store keeps its dense activations (False: an index can only be re-recorded)
    rerecord_command: str = ""  # the record command that rebuilds the store and its index in a new folder

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.arrays)

    def fix_commands(self) -> list[str]:
        """The commands that repair what was found (after ``--repair`` where it is needed first)."""
        cmds = []
        recorded = [a for a in self.arrays if not a.ok and a.kind in ("recorded", "tokenizer", "logit")]
        index = [a for a in self.arrays if not a.ok and a.kind == "index"]
        state = [a for a in self.arrays if not a.ok and a.kind == "state"]
        if (recorded or (index and self.dense) or state) and not self.repaired:
            cmds.append(f"neurobrowse verify --repair {self.path}")
        if recorded:
            cmds.append(self.record_command)
        if index and self.dense:
            cmds.append(f"neurobrowse index {self.path}")
        elif index:
            cmds.append(self.rerecord_command)
        return cmds


def _meta(folder: Path) -> dict | None:
    """The zarr.json of an array folder, or None when missing or garbage."""
    try:
        doc = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("node_type") == "array" else None


def _grid(meta: dict) -> list[tuple[int, ...]]:
    shape = meta["shape"]
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    counts = [max(1, -(-s // c)) if s else 0 for s, c in zip(shape, chunks)]
    return [tuple(ix) for ix in np.ndindex(*counts)] if shape else [()]


def _check_file(f: Path, size: int | None, counter: list,
                max_bytes: int | None = None) -> tuple[str | None, bytes | None]:
    """(reason it is bad or None, its checksum bytes). A file that is not a regular one (a FIFO, a device)
    or larger than its chunk can be is never read (it could block or never end)."""
    try:
        data = chunkio.read_regular(f, size if size is not None else max_bytes)
    except FileNotFoundError:
        return "missing", None
    except chunkio.NotAChunkFile as e:
        return str(e), None
    except OSError as e:
        return f"unreadable ({e.strerror})", None
    counter[0] += len(data)
    if size is not None and len(data) != size:
        return f"{len(data)} bytes, expected {size}", None
    raw = np.frombuffer(data, np.uint8)
    if raw.size < 4 or chunkio.crc32c(raw[:-4]) != data[-4:]:
        return "fails its Crc32c checksum", None
    return None, data[-4:]


def _check_array(root: Path, name: str, kind: str, counter: list, bar=None, bind: str | None = None) -> ArrayReport:
    """Every chunk file of an array whose markers are not checked (index, tokenizer, logit arrays); with
    ``bind`` (index arrays and saved states) each chunk also against the checksum record of the array
    (store.format.seal), which binds it to its place and the array to its name."""
    rep = ArrayReport(name, kind)
    meta = _meta(root / name)
    if meta is None:
        rep.bad["zarr.json"] = "metadata missing or not an array's JSON"
        return rep
    crcs = None
    if bind is not None:
        try:
            crcs = seal.check_record(meta, bind)
        except seal.DamagedRecord as e:
            rep.bad["zarr.json"] = str(e)
            return rep
    bound = _bound(meta)
    for i, coords in enumerate(_grid(meta)):
        rep.checked += 1
        reason, crc = _check_file(chunkio.chunk_path(root, name, coords), None, counter, bound)
        if reason is None and crcs is not None and crc != crcs[4 * i:4 * i + 4]:
            reason = "not the chunk written there (swapped with another chunk or array, or copied from elsewhere)"
        if reason:
            rep.bad[chunkio.chunk_key(coords)] = reason
    if bar is not None:
        bar.update(0)
    return rep


def _bound(meta: dict) -> int | None:
    """The most bytes a chunk file of the array with metadata ``meta`` can hold (None: unknown)."""
    try:
        return chunkio.max_chunk_bytes(meta["data_type"], meta["chunk_grid"]["configuration"]["chunk_shape"], None)
    except (KeyError, TypeError, ValueError):
        return None


def _check_recorded(root: Path, name: str, n_chunks: int, complete: bool, counter: list, bar=None) -> ArrayReport:
    """A per-token array: every chunk against its file's checksum, its size and its marker."""
    rep = ArrayReport(name, "recorded")
    meta = _meta(root / name)
    marker_meta = _meta(root / schema.done_path(name))
    if meta is None or marker_meta is None:
        rep.bad["zarr.json"] = f"metadata of {name if meta is None else schema.done_path(name)} missing or garbage"
        return rep
    marker_dtype = marker_meta["data_type"]
    chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
    codecs = [c.get("name") for c in meta.get("codecs", [])]
    size = (int(np.prod(chunks)) * np.dtype(meta["data_type"]).itemsize + 4) if codecs == ["bytes", "crc32c"] else None
    for i in range(n_chunks):
        coords = (i,) + (0,) * (len(chunks) - 1)
        key = chunkio.chunk_key(coords)
        mark = chunkio.read_marker(root, schema.done_path(name), i, marker_dtype)
        f = chunkio.chunk_path(root, name, coords)
        if not mark:
            if complete:
                rep.bad[key] = "no completion marker in a finished store"
            continue
        rep.checked += 1
        before = counter[0]
        reason, crc = _check_file(f, size, counter, _bound(meta))
        want = chunkio.marker_crc(mark)
        if reason is None and want is not None and crc != want:
            reason = "not the chunk its marker recorded (moved or copied from another place)"
        if reason:
            rep.bad[key] = reason
        if bar is not None:
            bar.update(counter[0] - before)
    return rep


def _index_metadata_problem(root: Path, hook: str) -> str | None:
    """Why the finished index of ``hook`` fails the readers' check (store.format.index_check), or None."""
    from store.format.index_check import check_index_arrays
    from store.format.reader import Store

    try:
        check_index_arrays(Store.open(root), hook)
    except StoreError as e:
        return str(e).split(" is damaged: ", 1)[-1].split("; ", 1)[0]
    return None


def _check_state(root: Path, hook: str, counter: list) -> ArrayReport | None:
    """The saved resume state of ``hook`` (index/{hook}/_state: slots of the single-process and record
    --index runs, parts of Dask runs): every array against its checksum record, every slot's attributes
    against their seal. None when there is no saved state."""
    base = f"{schema.index_path(hook)}/{schema.INDEX_STATE_GROUP}"
    folder = root / base
    if not folder.is_dir():
        return None
    rep = ArrayReport(base, "state")
    for meta_path in sorted(folder.rglob("zarr.json")):
        d = meta_path.parent
        rel = d.relative_to(root).as_posix()
        try:
            doc = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            rep.bad[rel] = "metadata unreadable or not JSON"
            continue
        if not isinstance(doc, dict):
            rep.bad[rel] = "metadata is not a JSON object"
        elif doc.get("node_type") == "group":
            if seal.attrs_ok(doc.get("attributes") or {}) is False:
                rep.bad[rel] = "attributes (token count, chunk ranges) do not match their checksum"
        elif doc.get("node_type") == "array":
            parent = d.parent.name
            which = parent if parent in ("p1", "s1", "p2") else parent.split("_")[0]
            sub = _check_array(root, rel, "state", counter, bind=f"{hook}/state/{which}/{d.name}")
            rep.checked += sub.checked
            rep.bad.update({f"{rel}/{k}": v for k, v in sub.bad.items()})
    return rep


def verify_store(path, *, repair: bool = False, progress: bool = False) -> VerifyReport:
    """Check every chunk of the store at ``path`` (see the module doc); with ``repair`` clear the markers
    of bad recorded chunks and drop damaged indexes. Returns the report; raises StoreError only when
    ``path`` is not a store at all."""
    root = Path(path).absolute()
    if not root.is_dir():
        raise StoreError(f"no store at {root}")
    manifest = schema.read_manifest(root)
    if manifest is None:
        raise StoreError(f"{root} is not a neurobrowse store (no manifest in its zarr.json)")
    if manifest.get("schema_version") != schema.SCHEMA_VERSION:
        raise StoreError(f"{root} has store schema version {manifest.get('schema_version')!r}; this neurobrowse "
                         f"verifies version {schema.SCHEMA_VERSION}")
    validate_manifest(manifest, root)
    hooks = list(manifest["hooks"])
    n_chunks = schema.n_chunks(int(manifest["n_tokens"]), int(manifest["chunk_tokens"]))
    complete = bool(manifest.get("complete"))
    recorded = [schema.TOKENS, schema.DOC_STARTS, *(hooks if manifest.get("dense", True) else [])]
    record_command = schema.record_command(manifest, root)
    bar = None
    if progress:
        from store.progress import progress_bar

        total = sum(f.stat().st_size for h in recorded
                    for f in (root / h).rglob("*") if f.is_file())
        bar = progress_bar(total=total, unit="B", unit_scale=True, desc=f"verify {root.name}")
    t0 = time.perf_counter()
    counter = [0]
    reports = []
    try:
        for name in recorded:  # a store recorded with --dense none has no hook arrays
            reports.append(_check_recorded(root, name, n_chunks, complete, counter, bar))
        reports.append(_check_array(root, schema.TOKENIZER_JSON, "tokenizer", counter))
        for layer in sorted({schema.parse_hook_name(h)[0] for h in hooks}):
            base = schema.logit_path(layer)
            if chunkio.read_marker(root, schema.done_path(base), 0, (_meta(root / schema.done_path(base)) or {})
                                   .get("data_type", chunkio.MARKER_DTYPE)):
                for k in schema.LOGIT_ARRAYS:
                    reports.append(_check_array(root, f"{base}/{k}", "logit", counter))
        for hook in hooks:
            folder = root / schema.index_path(hook)
            if not folder.exists():
                continue
            rep = ArrayReport(schema.index_path(hook), "index")
            try:
                attrs = json.loads((folder / "zarr.json").read_text()).get("attributes") or {}
            except (OSError, ValueError, AttributeError):
                rep.bad["zarr.json"] = "the index group's metadata is missing or garbage"
                attrs = {}
            if attrs.get("complete"):
                names = list(schema.INDEX_ARRAYS) + (list(schema.EXPLAIN_ARRAYS) if attrs.get("explained") else [])
                for name in names:
                    if name in schema.INDEX_DERIVED and not (folder / name / "zarr.json").is_file():
                        continue  # gathered from the tokens by readers (indexes before them stored these)
                    sub = _check_array(root, f"{schema.index_path(hook)}/{name}", "index", counter,
                                       bind=f"{hook}/{name}")
                    rep.checked += sub.checked
                    rep.bad.update({f"{name}/{k}": v for k, v in sub.bad.items()})
                if rep.ok:  # the metadata against the manifest (shapes, dtypes, window): what readers check
                    why = _index_metadata_problem(root, hook)
                    if why:
                        rep.bad["metadata"] = why
            reports.append(rep)
            state = _check_state(root, hook, counter)
            if state is not None:
                reports.append(state)
    finally:
        if bar is not None:
            bar.close()
    from store.format.checked import rerecord_out

    dense = bool(manifest.get("dense", True))
    report = VerifyReport(root, reports, counter[0], time.perf_counter() - t0, record_command, repaired=False,
                          dense=dense, rerecord_command=schema.record_command(manifest, rerecord_out(root)))
    if repair and not report.ok:
        _repair(root, report)
    return report


def _repair(root: Path, report: VerifyReport) -> None:
    """Clear the markers of bad recorded chunks (and ``complete``), drop damaged indexes."""
    from store.format.writer import StoreWriter

    writer = None
    for rep in report.arrays:
        if rep.ok:
            continue
        if rep.kind == "index":
            if not report.dense:  # nothing here can rebuild it: keep what is left, say how to re-record
                continue
            shutil.rmtree(root / rep.name)
        elif rep.kind == "state":  # recomputed from the data (or the recording) when a run needs it again
            for key in rep.bad:
                slot = root / rep.name / key.split("/")[len(rep.name.split("/"))]
                shutil.rmtree(slot, ignore_errors=True)
        elif rep.kind == "recorded":
            for key in rep.bad:
                if key.startswith("c/"):
                    chunkio.clear_marker(root, schema.done_path(rep.name), int(key.split("/")[1]))
        elif rep.kind in ("tokenizer", "logit"):
            marker = schema.TOKENIZER_JSON if rep.kind == "tokenizer" else rep.name.rsplit("/", 1)[0]
            chunkio.clear_marker(root, schema.done_path(marker), 0)
        if rep.kind not in ("index", "state"):
            writer = writer or StoreWriter.attach(root, fsync=False)
        rep.repaired = True
    if writer is not None and writer.manifest.get("complete"):
        writer._set_complete(False)
    report.repaired = True


def format_report(report: VerifyReport) -> str:
    """The per-array table `neurobrowse verify` prints, then what to run."""
    # binary units, as `neurobrowse info` and the app's status bar write a store's size (neurobrowse.formatting)
    lines = [f"verify {report.path}: {report.bytes_read / 2**20:,.1f} MiB read in {report.seconds:.1f} s"]
    for a in report.arrays:
        state = "ok" if a.ok else f"{len(a.bad)} BAD" + (" (repaired)" if a.repaired else "")
        lines.append(f"  {a.name:<40} {a.kind:<9} {a.checked:>6} chunk(s)  {state}")
        for key, why in list(a.bad.items())[:10]:
            lines.append(f"      {key}: {why}")
        if len(a.bad) > 10:
            lines.append(f"      ... and {len(a.bad) - 10} more")
    if report.ok:
        lines.append("every chunk is intact")
    else:
        if not report.dense and any(not a.ok and a.kind == "index" for a in report.arrays):
            lines.append("this store keeps no dense activations (recorded with --index --dense none): its damaged "
                         "index cannot be made again from it and is left as it is (its numbers are lost; the "
                         "tokens, logit effects and labels are not); the record command below rebuilds the "
                         "store with its index in a new folder")
        lines.append("to repair, run:" if not report.repaired else "markers of the bad chunks cleared; now run:")
        lines += [f"  {c}" for c in report.fix_commands()]
    return "\n".join(lines)
