"""Checksum records of the index arrays and of the resume state: what binds each chunk file to its place.

Every chunk file already ends in its own Crc32c (a flipped byte or a truncation fails it), but a file in
the wrong place does not: two same-shaped arrays swapped on disk (``var`` <-> ``skewness``), two chunks
of one array swapped, a chunk file deleted (zarr reads fill values), or a ``zarr.json`` whose shape or
dtype was edited (``float32`` read as ``int32``) all read as valid numbers. So each array the index
writes gets a *checksum record* in its own ``zarr.json`` attributes (``RECORD_ATTR``)::

    {"name": "blocks.0.mlp.hook_post/var",   # what the array is (hook and array; state: hook/state/p1/field)
     "shape": [512], "dtype": "float64", "chunks": [512],
     "crc": "1a2b3c4d...",                    # the Crc32c of every chunk file, 8 hex digits each, C order
     "seal": "5e6f7a8b"}                      # Crc32c of the record's other fields (a damaged record fails)

A reader compares a chunk file's stored checksum (its last 4 bytes, which the file's own Crc32c already
vouches for) with the one the record holds for that array and chunk: no extra read. A saved state
group (one slot of ``index/{hook}/_state``) seals its attributes (``ranges``, the token count ``n``,
...) the same way (``seal_attrs`` / ``attrs_ok``). Arrays written before these records have none and
are read as before (``record_of`` returns None).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from store.format import atomic, chunkio

RECORD_ATTR = "neurobrowse_checksums"  # array attribute: the checksum record
SEAL_ATTR = "neurobrowse_seal"  # group attribute: Crc32c of the group's other attributes (saved states)


class DamagedRecord(Exception):
    """An array or a group whose checksum record says it is not what was written (message: what)."""


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _crc_hex(obj) -> str:
    return chunkio.crc32c(np.frombuffer(_canonical(obj), np.uint8)).hex()


def grid_counts(shape, chunks) -> tuple[int, ...]:
    return tuple(max(1, -(-int(s) // int(c))) if int(s) else 0 for s, c in zip(shape, chunks))


def make_record(name: str, shape, dtype, chunks, crcs: list[bytes]) -> dict:
    rec = {"name": name, "shape": [int(s) for s in shape], "dtype": str(np.dtype(dtype)),
           "chunks": [int(c) for c in chunks], "crc": b"".join(crcs).hex()}
    rec["seal"] = _crc_hex(rec)
    return rec


def _meta_fields(meta: dict) -> tuple[list, str, list]:
    """(shape, dtype, chunk shape) from an array's zarr.json document."""
    shape = [int(s) for s in meta["shape"]]
    dtype = str(np.dtype(meta["data_type"]))
    chunks = [int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"]]
    return shape, dtype, chunks


def seal_array(folder: Path, name: str, crcs: list[bytes] | None = None) -> dict:
    """Write the checksum record of the array in ``folder`` (its zarr.json's attributes), bound to
    ``name``. ``crcs``: the checksum of each chunk file in C order, as the writer got them (read from
    the files' last 4 bytes when None). Returns the record."""
    meta_path = Path(folder) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    shape, dtype, chunks = _meta_fields(meta)
    if crcs is None:
        crcs = []
        for coords in np.ndindex(*grid_counts(shape, chunks)):
            c = chunkio.stored_crc(chunkio.chunk_path(Path(folder).parent, Path(folder).name, tuple(coords)))
            crcs.append(c or b"\0\0\0\0")
    rec = make_record(name, shape, dtype, chunks, crcs)
    meta.setdefault("attributes", {})[RECORD_ATTR] = rec
    atomic.write_text(meta_path, json.dumps(meta, indent=2))
    return rec


def record_of(meta: dict) -> dict | None:
    """The checksum record in an array's zarr.json document, or None when it has none (older indexes)."""
    rec = (meta.get("attributes") or {}).get(RECORD_ATTR) if isinstance(meta, dict) else None
    return rec if rec is not None else None


def check_record(meta: dict, name: str | None) -> bytes | None:
    """The chunk checksums (4 bytes each, C order) the record of ``meta`` holds, after checking that the
    record is whole (its seal), that it belongs to ``name`` (None: any) and that the array's shape, dtype
    and chunks are the ones written. None when there is no record; DamagedRecord otherwise."""
    rec = record_of(meta)
    if rec is None:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("crc"), str):
        raise DamagedRecord("its checksum record is damaged")
    body = {k: v for k, v in rec.items() if k != "seal"}
    if rec.get("seal") != _crc_hex(body):
        raise DamagedRecord("its checksum record is damaged (the record's own checksum does not match)")
    if name is not None and rec.get("name") != name:
        raise DamagedRecord(f"it holds the array written as {rec.get('name')!r} (moved or swapped on disk)")
    try:
        shape, dtype, chunks = _meta_fields(meta)
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedRecord(f"its zarr.json is not an array's metadata ({e})") from None
    for what, got in (("shape", shape), ("dtype", dtype), ("chunks", chunks)):
        if got != rec.get(what):
            raise DamagedRecord(f"its zarr.json says {what} {got}, but it was written with {rec.get(what)} "
                                "(the metadata was edited or replaced)")
    try:
        crcs = bytes.fromhex(rec["crc"])
    except ValueError:
        raise DamagedRecord("its checksum record is damaged") from None
    if len(crcs) != 4 * int(np.prod(grid_counts(shape, chunks))):
        raise DamagedRecord("its checksum record does not cover its chunks")
    return crcs


def expected_crc(crcs: bytes, shape, chunks, coords: tuple[int, ...]) -> bytes:
    """The checksum the record ``crcs`` holds for the chunk at ``coords``."""
    i = int(np.ravel_multi_index(tuple(int(c) for c in coords), grid_counts(shape, chunks)))
    return crcs[4 * i:4 * i + 4]


def check_files(folder: Path, meta: dict, name: str | None) -> None:
    """Check every chunk file of the array in ``folder`` against its record (a stat and a 4-byte read
    each; the file's own Crc32c is checked when it is decoded). DamagedRecord naming the first bad chunk."""
    crcs = check_record(meta, name)
    if crcs is None:
        return
    shape, _dtype, chunks = _meta_fields(meta)
    for i, coords in enumerate(np.ndindex(*grid_counts(shape, chunks))):
        f = chunkio.chunk_path(Path(folder).parent, Path(folder).name, tuple(coords))
        got = chunkio.stored_crc(f)
        if got is None:
            raise DamagedRecord(f"chunk {chunkio.chunk_key(tuple(coords))!r} is missing or too short")
        if got != crcs[4 * i:4 * i + 4]:
            raise DamagedRecord(f"chunk {chunkio.chunk_key(tuple(coords))!r} is not the chunk written there "
                                "(damaged, or swapped with another chunk or array)")


def seal_attrs(attrs: dict) -> dict:
    """``attrs`` with SEAL_ATTR set to the checksum of the others (write this dict as the group's attrs)."""
    body = json.loads(_canonical({k: v for k, v in attrs.items() if k != SEAL_ATTR}))
    return {**body, SEAL_ATTR: _crc_hex(body)}


def attrs_ok(attrs: dict) -> bool | None:
    """True when the group attributes match their seal, False when not, None when they have none."""
    if SEAL_ATTR not in attrs:
        return None
    body = {k: v for k, v in attrs.items() if k != SEAL_ATTR}
    return attrs[SEAL_ATTR] == _crc_hex(json.loads(_canonical(body)))


__all__ = ["RECORD_ATTR", "SEAL_ATTR", "DamagedRecord", "attrs_ok", "check_files", "check_record", "expected_crc",
           "make_record", "record_of", "seal_array", "seal_attrs"]
