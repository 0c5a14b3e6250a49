"""Chunk files of a store, read and written without zarr's pipeline: the one place that knows their bytes.

A chunk file in the layouts neurobrowse writes (``schema.chunk_codec_layout``) is the chunk's C-order
little-endian bytes, padded with the fill value 0 to the full chunk shape, zstd-compressed for the
``"zstd"`` layout (index arrays, token ids) or not for ``"raw"`` (dense activations), followed by the
Crc32c of those bytes (4 bytes, little endian): exactly what zarr writes and reads for these codecs.

Completion markers (``done/{array}``, one marker per chunk) record the Crc32c of the chunk they mark
(``marker_value``): a chunk file that is later damaged, truncated or moved to another chunk's place
(``c/3/0`` <-> ``c/4/0``) no longer matches its marker. Stores written before markers carried the
checksum have uint8 markers (1 = written); for those only the file's own checksum is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import google_crc32c
import numpy as np

from store.errors import CorruptChunkError
from store.format.atomic import fsync_path

MARKER_DTYPE = "uint64"  # marker value: MARKER_SET | Crc32c of the chunk; 0 = not written
MARKER_SET = np.uint64(1 << 32)
LEGACY_MARKER_DTYPE = "uint8"  # 1 = written, no checksum recorded


class NotAChunkFile(Exception):
    """A file in a chunk's place that is not one: a FIFO, device or socket (reading it could block or never
    end), or larger than the chunk could ever be (``/dev/zero``'s contents copied in, say). The message says
    which; it is read no further."""


def max_chunk_bytes(dtype, chunk_shape, layout: str | None = "zstd") -> int:
    """The most bytes a chunk file of this array can hold: the raw chunk plus its checksum for ``"raw"``,
    else zstd's worst case over the raw chunk (it never grows data by more than a fraction) plus headers."""
    n = int(np.prod(chunk_shape)) * np.dtype(dtype).itemsize
    return n + 4 if layout == "raw" else n + n // 64 + 4096


def open_regular(path: Path, max_bytes: int | None = None):
    """(an unbuffered binary file, its size) for the regular file at ``path``, opened without blocking (a
    FIFO is never waited on); NotAChunkFile when it is not a regular file or is larger than ``max_bytes``.
    FileNotFoundError / IsADirectoryError / NotADirectoryError as ``open`` raises them."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotAChunkFile("not a regular file (a FIFO, device or socket)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise NotAChunkFile(f"{st.st_size:,} bytes, more than its array's chunk can ever take ({max_bytes:,})")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0), int(st.st_size)


def read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    """The whole regular file at ``path`` (see ``open_regular``)."""
    fh, size = open_regular(path, max_bytes)
    with fh:
        return fh.read(size + 1 if max_bytes is None else min(size, max_bytes) + 1)


def crc32c(buf) -> bytes:
    """The 4 checksum bytes zarr's Crc32cCodec appends (little endian) for the bytes ``buf``."""
    view = np.frombuffer(memoryview(buf).cast("B"), np.uint8) if not isinstance(buf, np.ndarray) else buf
    view = view.reshape(-1).view(np.uint8)
    if view.flags.writeable:  # google_crc32c wants a read-only buffer
        view = view.view()
        view.flags.writeable = False
    return np.uint32(google_crc32c.value(view)).tobytes()


def chunk_key(coords: tuple[int, ...]) -> str:
    """The default (v3) chunk key of chunk ``coords``, e.g. (3, 0) -> 'c/3/0'."""
    return "/".join(["c", *map(str, coords)])


def chunk_path(root: Path, array: str, coords: tuple[int, ...]) -> Path:
    return Path(root) / array / chunk_key(coords)


def pad_chunk(part: np.ndarray, chunk_shape: tuple[int, ...]) -> np.ndarray:
    """``part`` padded with zeros at the end of each axis to ``chunk_shape`` (the last chunk of an array
    is stored full size)."""
    if tuple(part.shape) == tuple(chunk_shape):
        return part
    return np.pad(part, [(0, c - s) for s, c in zip(part.shape, chunk_shape)])


def encode(part: np.ndarray, dtype, chunk_shape: tuple[int, ...], layout: str, zstd_level: int = 1) -> np.ndarray:
    """The payload bytes (uint8, without the checksum) of one chunk holding ``part``."""
    buf = np.ascontiguousarray(pad_chunk(np.asarray(part), chunk_shape), dtype=np.dtype(dtype).newbyteorder("<"))
    payload = buf.reshape(-1).view(np.uint8)
    if layout == "zstd":
        from numcodecs import Zstd

        payload = np.frombuffer(Zstd(level=zstd_level).encode(payload), np.uint8)
    elif layout != "raw":
        raise ValueError(f"unknown chunk layout {layout!r} (raw or zstd)")
    return payload


def write_file(path: Path, payload: np.ndarray, fsync: bool = False) -> bytes:
    """Write one chunk file (payload + its Crc32c) in place; returns the checksum bytes.

    In place, not via temp file + rename: the completion marker (or the index's ``complete``
    attribute), written only after this returns, is what says a chunk is valid, so a half-written
    chunk has none and is written again on resume."""
    crc = crc32c(payload)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        mv = memoryview(payload.reshape(-1).view(np.uint8))
        while mv.nbytes:  # os.write may write less than asked for large buffers
            mv = mv[os.write(fd, mv):]
        os.write(fd, crc)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if fsync:
        fsync_dir(path.parent)
    return crc


fsync_dir = fsync_path  # a folder's entries (or, given a file, the file) to disk: store.format.atomic.fsync_path


def raw_size(dtype, chunk_shape: tuple[int, ...]) -> int:
    """Bytes of a ``"raw"`` chunk file: the full chunk plus 4 checksum bytes."""
    return int(np.prod(chunk_shape)) * np.dtype(dtype).itemsize + 4


def read_file(path: Path, layout: str, dtype, chunk_shape: tuple[int, ...], array: str, key: str,
              advice: str, expect_crc: bytes | None = None,
              recorded_by: str = "its completion marker recorded") -> np.ndarray:
    """One whole chunk [chunk_shape] read from ``path`` and checked: missing, truncated, failing its
    Crc32c, not decodable, or (``expect_crc``: the checksum its completion marker recorded) not the
    chunk that belongs here raise CorruptChunkError naming ``array`` and ``key`` and ending in ``advice``.

    "raw" files are read straight into the result's buffer (one copy out of the page cache) and
    the Crc32c is computed over that buffer."""
    dtype = np.dtype(dtype).newbyteorder("<")
    try:
        if layout == "raw":
            size = raw_size(dtype, chunk_shape)
            raw = np.empty(size, np.uint8)
            fh, _ = open_regular(path, size)
            with fh:
                got = fh.readinto(raw)
                extra = fh.read(1) if got == size else b""
            n = got + len(extra)
        else:
            raw = np.frombuffer(read_regular(path, max_chunk_bytes(dtype, chunk_shape, layout)), np.uint8)
            n = size = raw.size
    except FileNotFoundError:
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} is missing ({path} does not exist); "
                                f"{advice}") from None
    except IsADirectoryError:
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} is a folder, not a file ({path}); {advice}") from None
    except NotAChunkFile as e:
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} is {e} ({path}); {advice}") from None
    stored = raw[n - 4:n].tobytes() if n >= 4 else b""
    if n != size or n < 4 or crc32c(raw[:n - 4]) != stored:
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} fails its Crc32c checksum ({path}, {n} bytes: "
                                f"damaged or truncated); {advice}")
    if expect_crc is not None and stored != expect_crc:
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} is not the chunk {recorded_by} "
                                f"({path}: a chunk file moved, swapped or copied from elsewhere); {advice}")
    if layout == "raw":
        return raw[:-4].view(dtype).reshape(chunk_shape)
    from numcodecs import Zstd

    try:
        return np.frombuffer(Zstd().decode(raw[:-4]), dtype=dtype).reshape(chunk_shape)
    except Exception as e:  # noqa: BLE001 - any decode failure is a damaged chunk
        raise CorruptChunkError(f"array {array!r}: chunk {key!r} cannot be decoded ({e}); {advice}") from e


def stored_crc(path: Path, expect_size: int | None = None) -> bytes | None:
    """The checksum bytes at the end of a chunk file without reading it whole (cheap: a stat and a
    4-byte read), or None when the file is missing, too short or (``expect_size``) of another size."""
    try:
        fh, size = open_regular(path)
        with fh:
            if size < 4 or (expect_size is not None and size != expect_size):
                return None
            fh.seek(size - 4)
            return fh.read(4)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, NotAChunkFile):
        return None


def file_crc_ok(path: Path, max_bytes: int | None = None) -> bytes | None:
    """Read a whole chunk file and check its Crc32c: its checksum bytes when good, else None."""
    try:
        raw = np.frombuffer(read_regular(path, max_bytes), np.uint8)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, NotAChunkFile):
        return None
    if raw.size < 4:
        return None
    stored = raw[-4:].tobytes()
    return stored if crc32c(raw[:-4]) == stored else None


# ---- completion markers -----------------------------------------------------------------------------------
def marker_value(crc: bytes) -> np.uint64:
    """The marker of a chunk whose file ends in the checksum bytes ``crc``."""
    return MARKER_SET | np.uint64(int.from_bytes(crc, "little"))


def marker_crc(value) -> bytes | None:
    """The chunk checksum a marker recorded (None for an unset or legacy marker)."""
    v = int(value)
    if not v & int(MARKER_SET):
        return None
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def marker_file_bytes(value, dtype: str = MARKER_DTYPE) -> bytes:
    """The whole marker chunk file (one value, Crc32c only) for ``value``."""
    payload = np.array([value], dtype=np.dtype(dtype).newbyteorder("<")).view(np.uint8)
    return payload.tobytes() + crc32c(payload)


def write_marker(root: Path, marker_array: str, index: int, value, dtype: str = MARKER_DTYPE) -> None:
    """Set one completion marker (not fsynced: a lost marker only means its chunk is written again)."""
    f = chunk_path(root, marker_array, (index,))
    f.parent.mkdir(parents=True, exist_ok=True)
    write_file(f, np.frombuffer(marker_file_bytes(value, dtype)[:-4], np.uint8))


def clear_marker(root: Path, marker_array: str, index: int) -> None:
    chunk_path(root, marker_array, (index,)).unlink(missing_ok=True)


def read_marker(root: Path, marker_array: str, index: int, dtype: str = MARKER_DTYPE) -> int:
    """One marker's value; 0 when its file is missing, empty or damaged (a kill while it was written)."""
    size = np.dtype(dtype).itemsize
    try:
        raw = read_regular(chunk_path(root, marker_array, (index,)), size + 4)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, NotAChunkFile):
        return 0
    if len(raw) != size + 4 or crc32c(np.frombuffer(raw[:size], np.uint8)) != raw[size:]:
        return 0
    return int(np.frombuffer(raw[:size], np.dtype(dtype).newbyteorder("<"))[0])


def read_markers(root: Path, marker_array: str, n: int, dtype: str = MARKER_DTYPE) -> np.ndarray:
    """uint64 [n] marker values of ``marker_array`` (0 where unset or damaged)."""
    return np.array([read_marker(root, marker_array, i, dtype) for i in range(n)], dtype=np.uint64)
