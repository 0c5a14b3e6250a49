"""The checked Zarr store under every Store read, and the chunk reads that bypass zarr.

``CheckedLocalStore`` is a LocalStore that refuses to hand zarr a damaged chunk: a chunk whose
Crc32c does not match (random bytes, truncation), a chunk file that is missing (zarr would silently
read fill_value), or an index chunk that is not the one its checksum record (store.format.seal) or
completion marker holds raises CorruptChunkError naming the array, the chunk key and the repair
(``damaged_advice`` / ``index_advice``). ``decode_chunk_file`` reads one whole chunk straight from
its file with the same checks; ``read_many`` reads several selections in one concurrent zarr batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from store import schema
from store.errors import StoreError
from store.errors import CorruptChunkError
from store.format import chunkio, seal
from store.schema import read_manifest

_CHUNK_KEY = re.compile(r"^(.*)/c((?:/\d+)*)$")


class CheckedLocalStore(LocalStore):
    """A LocalStore whose chunk reads fail loudly: missing chunk files, Crc32c mismatches and chunk files
    that are not the one their completion marker recorded raise CorruptChunkError with the array name
    and chunk key. Completion-marker arrays (done/...) are exempt from the missing check: an absent
    marker means "not written yet"."""

    def __init__(self, root, *, read_only: bool = True):
        super().__init__(root, read_only=read_only)
        self._array_info: dict[str, tuple] = {}  # array -> (strict, crc, marker dtype, checksum record)
        self._bounds: dict[str, int] = {}  # array -> the most bytes one of its chunk files can hold (-1: unknown)

    def _info_from_meta(self, array: str, meta_bytes, marker_meta) -> tuple[bool, bool, str | None]:
        crc = False
        if meta_bytes is not None:
            try:
                meta = json.loads(meta_bytes.to_bytes())
                codecs = meta.get("codecs") or []
                crc = bool(codecs) and codecs[-1].get("name") == "crc32c"
            except (ValueError, AttributeError):
                crc = False
        marker_dtype = None
        if marker_meta is not None:
            try:
                marker_dtype = json.loads(marker_meta.to_bytes()).get("data_type")
            except (ValueError, AttributeError):
                marker_dtype = None
        # an array whose metadata vanished (an index folder removed under a reader) is strict too: zarr
        # has its metadata cached and would read fill values
        strict = not array.startswith(schema.DONE_GROUP + "/")
        record = None  # index arrays: (chunk checksums, shape, chunks) of their checksum record, or why it is bad
        if array.startswith(schema.INDEX_GROUP + "/") and meta_bytes is not None:
            try:
                meta = json.loads(meta_bytes.to_bytes())
                crcs = seal.check_record(meta, index_record_name(array))
                if crcs is not None:
                    record = (crcs, meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"])
            except seal.DamagedRecord as e:
                record = str(e)
            except (ValueError, AttributeError, KeyError, TypeError):
                record = None
        return strict, crc, marker_dtype, record

    def _check(self, key: str, value, byte_range, info: tuple):
        strict, crc, marker_dtype, record = info
        array = _CHUNK_KEY.match(key).group(1)
        chunk_key = key[len(array) + 1:]
        if value is None:
            if strict:
                raise CorruptChunkError(f"array {array!r}: chunk {chunk_key!r} is missing ({self.root / key} does not "
                                        f"exist); {damaged_advice(array, self.root)}")
            return value
        if crc and byte_range is None:
            raw = value.as_numpy_array()
            stored = raw[-4:].tobytes()
            if raw.size < 4 or chunkio.crc32c(raw[:-4]) != stored:
                raise CorruptChunkError(
                    f"array {array!r}: chunk {chunk_key!r} fails its Crc32c checksum ({self.root / key}, "
                    f"{raw.size} bytes: damaged or truncated); {damaged_advice(array, self.root)}")
            if isinstance(record, str):
                raise CorruptChunkError(f"array {array!r} is damaged: {record}; {damaged_advice(array, self.root)}")
            if record is not None:
                coords = tuple(int(x) for x in chunk_key.split("/")[1:])
                if seal.expected_crc(record[0], record[1], record[2], coords) != stored:
                    raise CorruptChunkError(
                        f"array {array!r}: chunk {chunk_key!r} is not the chunk written there ({self.root / key}: "
                        f"damaged, or swapped with another chunk or array); {damaged_advice(array, self.root)}")
            if marker_dtype is not None:
                index = int(chunk_key.split("/")[1])
                want = chunkio.marker_crc(chunkio.read_marker(self.root, schema.done_path(array), index, marker_dtype))
                if want is not None and want != stored:
                    raise CorruptChunkError(
                        f"array {array!r}: chunk {chunk_key!r} is not the chunk its completion marker recorded "
                        f"({self.root / key}: moved or copied from elsewhere); {damaged_advice(array, self.root)}")
        return value

    def _marker_meta_key(self, array: str) -> str | None:
        if array.startswith((schema.DONE_GROUP + "/", schema.INDEX_GROUP + "/", schema.LOGIT_GROUP + "/")):
            return None
        return f"{schema.done_path(array)}/zarr.json"

    def _precheck(self, key: str, array: str, meta) -> None:
        """Before a chunk file is read: refuse one that is not a regular file (a FIFO would block the read,
        a device never end it) or is larger than the array's chunk can ever be (read whole by zarr)."""
        import stat

        try:
            st = os.stat(self.root / key)
        except OSError:
            return  # missing: _check names it
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file (a FIFO, device or socket)"
        elif meta is not None:
            bound = self._bounds.get(array)
            if bound is None:
                try:
                    doc = json.loads(meta.to_bytes())
                    bound = chunkio.max_chunk_bytes(doc["data_type"], doc["chunk_grid"]["configuration"]["chunk_shape"],
                                                    None)
                except (ValueError, KeyError, TypeError, AttributeError):
                    bound = -1
                self._bounds[array] = bound
            if bound >= 0 and st.st_size > bound:
                why = f"{st.st_size:,} bytes, more than its array's chunk can ever take ({bound:,})"
        if why:
            raise CorruptChunkError(f"array {array!r}: chunk {key[len(array) + 1:]!r} is {why} ({self.root / key}); "
                                    f"{damaged_advice(array, self.root)}")

    async def get(self, key, prototype=None, byte_range=None):
        m = _CHUNK_KEY.match(key)
        if m is None:
            return await super().get(key, prototype, byte_range)
        array = m.group(1)
        meta = None
        if array not in self._array_info:
            meta = await super().get(f"{array}/zarr.json", prototype)
            mk = self._marker_meta_key(array)
            marker = await super().get(mk, prototype) if mk else None
            self._array_info[array] = self._info_from_meta(array, meta, marker)
        if array not in self._bounds and meta is None:
            meta = await super().get(f"{array}/zarr.json", prototype)
        self._precheck(key, array, meta)
        value = await super().get(key, prototype, byte_range)
        return self._check(key, value, byte_range, self._array_info[array])

    def get_sync(self, key, *, prototype=None, byte_range=None):
        m = _CHUNK_KEY.match(key)
        if m is None:
            return super().get_sync(key, prototype=prototype, byte_range=byte_range)
        array = m.group(1)
        meta = None
        if array not in self._array_info:
            meta = super().get_sync(f"{array}/zarr.json", prototype=prototype)
            mk = self._marker_meta_key(array)
            marker = super().get_sync(mk, prototype=prototype) if mk else None
            self._array_info[array] = self._info_from_meta(array, meta, marker)
        if array not in self._bounds and meta is None:
            meta = super().get_sync(f"{array}/zarr.json", prototype=prototype)
        self._precheck(key, array, meta)
        value = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        return self._check(key, value, byte_range, self._array_info[array])




def direct_layout(arr: zarr.Array) -> str | None:
    """``schema.chunk_codec_layout`` for arrays chunked along their first axis only (what the
    readers here decode), else None (then zarr reads it)."""
    return schema.chunk_codec_layout(arr) if tuple(arr.chunks[1:]) == tuple(arr.shape[1:]) else None


def index_record_name(array: str) -> str | None:
    """The name an index array's checksum record binds it to ('HOOK/ARRAY', store.format.seal) for its
    path in a store ('index/HOOK/ARRAY' or 'index/_rebuild/HOOK/ARRAY'); None for other arrays."""
    parts = array.split("/")
    if parts[:2] == [schema.INDEX_GROUP, schema.REBUILD_GROUP]:
        parts = parts[:1] + parts[2:]
    if len(parts) == 3 and parts[0] == schema.INDEX_GROUP:
        return f"{parts[1]}/{parts[2]}"
    return None


def rerecord_out(root) -> Path:
    """A new folder beside the store at ``root`` to record it again into (``STORE-rerecorded``, numbered
    when that exists)."""
    root = Path(root)
    out, i = root.with_name(root.name + "-rerecorded"), 1
    while out.exists():
        i += 1
        out = root.with_name(f"{root.name}-rerecorded{i}")
    return out


def index_advice(root, manifest: dict | None = None) -> str:
    """How to rebuild a damaged index of the store at ``root``: ``neurobrowse index --force`` when it keeps
    its dense activations; else (recorded with --index --dense none) what is lost and the record command
    that rebuilds it into a new folder (the index cannot be made again from this store)."""
    where = shlex.quote(str(root))
    if manifest is None:
        try:
            manifest = read_manifest(root) or {}
        except StoreError:
            manifest = {}
    if manifest.get("dense", True):
        return f"re-index it: `neurobrowse index --force {where}`"
    cmd = schema.record_command(manifest, rerecord_out(root))
    return (f"this store keeps no dense activations (recorded with --index --dense none), so its index cannot be "
            f"made again from it: the damaged index's numbers are lost (the tokens, logit effects and labels are "
            f"not). Record it again into a new folder, which rebuilds the index: `{cmd}`")


def damaged_advice(name: str, root) -> str:
    """The command that repairs a damaged chunk of array ``name`` in the store at ``root``."""
    where = shlex.quote(str(root))
    if name.startswith(schema.INDEX_GROUP + "/"):
        return index_advice(root)
    return (f"run `neurobrowse verify --repair {where}` (it clears the markers of the bad chunks), then the "
            f"store's record command again to rewrite them")


def decode_chunk_file(root: Path, name: str, arr: zarr.Array, chunk_index: int, layout: str = "zstd",
                       expect_crc: bytes | None = None,
                       recorded_by: str = "its completion marker recorded") -> np.ndarray:
    """One whole chunk [chunk_rows, ...] of an array laid out as direct_layout says, read and checked
    by store.format.chunkio without zarr's event loop. For index pages (~20 small zstd chunks) the loop's
    thread hand-offs cost more than the reads on a busy 2-core machine; a dense activation chunk
    ("raw") is read straight into the result's buffer (2 ms instead of zarr's 4.7 ms per 8 MB
    chunk, benchmarks/bench_index.py)."""
    coords = (chunk_index,) + (0,) * (arr.ndim - 1)
    return chunkio.read_file(chunkio.chunk_path(root, name, coords), layout, arr.dtype, arr.chunks, name,
                             chunkio.chunk_key(coords), damaged_advice(name, root), expect_crc, recorded_by)




def read_many(reads: list[tuple[zarr.Array, tuple]]) -> list[np.ndarray]:
    """Read several (array, selection) pairs in one concurrent batch on zarr's event loop."""

    async def go():
        # return_exceptions: every read is awaited to its end, so a failed read (a damaged chunk) leaves
        # no "Task exception was never retrieved" behind; the first failure is raised here
        return await asyncio.gather(*[a.async_array.getitem(sel) for a, sel in reads], return_exceptions=True)

    out = sync(go())
    for x in out:
        if isinstance(x, BaseException):
            raise x
    return [np.asarray(x) for x in out]
