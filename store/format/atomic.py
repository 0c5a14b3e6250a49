"""Writing a file whole or not at all, swapping a rebuilt folder in atomically, and a lock per store and hook
for the writers of an index.

``writing(path)`` yields a temporary path beside ``path`` and renames the finished file over it when the
``with`` block ends without an error (after flushing it to disk, with ``fsync=True``); on an error the
temporary file is removed and ``path`` is untouched. ``write_text(path, text)`` is that for a text file.
Every file neurobrowse replaces goes through one of them (JSON sidecars, reports, figures, exports, label
backups, resume states), so a reader or a crash sees the old file or the new one, never half of one.

``exchange(a, b)`` swaps two folders in one step (Linux renameat2 with RENAME_EXCHANGE), so a reader
that opens ``a`` sees the old folder or the new one, never a mix and never nothing. Where that call
is missing (another OS, an old kernel or file system) it falls back to two renames, leaving a moment
in which ``a`` is absent (a reader then gets a clear "not indexed" error, never wrong data).

``swap_in(new, out)`` puts a finished folder in place of an older one that way and deletes the old one
(recording's index, checkpoints, corpora).

``hook_lock(store, hook)`` serialises `neurobrowse index` runs on one hook of one store: the second
run waits (saying so, with the first one's process id) and then finds the hook indexed. The lock is
an advisory ``fcntl.flock`` on a file in the store's ``index`` folder, released by the kernel when
its process ends, however it ends (``kill -9`` included): no stale lock is ever left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import gzip as gzip_mod
import io
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from store.errors import StoreError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None
# gzipped outputs (``output``): zlib's default level (9 took 3x longer for a few % smaller files), mtime 0,
# so the same input gives the same bytes
GZIP_LEVEL = 6


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writing(path: str | os.PathLike, *, fsync: bool = False, suffix: str = ""):
    """Yield a temporary path beside ``path`` (hidden, named for this process, ending in ``suffix`` for
    writers that go by the extension: ".png", ".npy") for the ``with`` block to write; when the block ends
    without an error, the file is renamed over ``path`` (first flushed to disk and the rename after it, with
    ``fsync``). On an error (or Ctrl-C) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if fsync:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        with contextlib.suppress(OSError):  # the rename itself made durable; not every file system allows it
            fsync_path(path.parent)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    """Replace the text file ``path`` with ``text`` (UTF-8) in one step (``writing``)."""
    with writing(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def output(path: str | os.PathLike, *, gzip: bool = False, text: bool = True, newline: str | None = None,
           error: type[Exception] = StoreError):
    """``path`` opened for writing as a stream (text, or bytes with ``text=False``; gzipped with ``gzip``),
    written whole or not at all (``writing``, fsynced). When writing fails, ``error`` (a StoreError unless
    given) says which file and that the previous one is unchanged; the temporary file is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot write {path}: {e}") from None
    try:
        with writing(path, fsync=True) as tmp:
            try:
                raw = open(tmp, "wb")
            except OSError as e:
                raise error(f"cannot write {path}: {e}") from None
            try:
                stream: Any = (gzip_mod.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=GZIP_LEVEL) if gzip else raw)
                f = io.TextIOWrapper(stream, encoding="utf-8", newline=newline) if text else stream
                try:
                    yield f
                    f.flush()
                finally:
                    if text:
                        f.detach()
                    if gzip:
                        stream.close()
                raw.close()
            except BaseException:
                with contextlib.suppress(OSError):  # closing flushes what a full disk refused; the file is dropped
                    raw.close()
                raise
    except OSError as e:
        raise error(f"writing {path} failed ({e}); the previous file, if any, is unchanged") from None


def _renameat2():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return getattr(_libc, "renameat2", None) if _libc else None


def exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` (both must exist). Returns True when it was one atomic step."""
    fn = _renameat2()
    if fn is not None:
        rc = fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
        if rc == 0:
            return True
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(a), None, str(b))
    tmp = a.with_name(a.name + ".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    return False


def swap_in(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``: an older ``out`` is exchanged with it in one step
    (``exchange``) and then deleted, so a reader (or a crash) sees the old folder or the new one,
    never half of either; without one, a rename."""
    if out.exists():
        exchange(out, new)  # ``new`` now holds the old folder
        shutil.rmtree(new, ignore_errors=True)
    else:
        os.rename(new, out)


@contextlib.contextmanager
def hook_lock(store_path: Path, hook: str, *, wait: bool = True, say=None):
    """Hold the index lock of ``hook`` in the store at ``store_path`` for the ``with`` block. Another
    holder: wait for it (printing one line through ``say``, default stderr) or, with ``wait=False``,
    raise StoreError naming its process."""
    import fcntl

    folder = Path(store_path) / "index"
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / f".lock-{hook}", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            msg = (f"{hook} of {store_path} is being indexed by {holder}; "
                   + ("waiting for it to finish" if wait else "wait for it to finish, then run the command again"))
            if not wait:
                raise StoreError(msg) from None
            (say or (lambda m: print(m, file=sys.stderr, flush=True)))(msg)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        yield
    finally:
        f.close()  # closing the file releases the lock


class DirLock:
    """An exclusive advisory lock on a folder (``fcntl.flock`` on the folder itself: no file is made in it),
    held until ``release`` or the end of the process, however it ends."""

    def __init__(self, fd: int | None, created: Path | None):
        self.fd = fd
        self.created = created  # the folder, when taking the lock made it (removed again if left empty)

    def release(self, remove_if_empty: bool = False) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if remove_if_empty and self.created is not None:
            try:
                self.created.rmdir()  # only an empty folder: nothing was written into it
            except OSError:
                pass


def store_inside(path: Path) -> Path | None:
    """The neurobrowse store that ``path`` lies inside (a parent folder with a store manifest), or None."""
    from store.schema import read_manifest

    path = Path(path).absolute()
    for parent in path.parents:
        if (parent / "zarr.json").is_file():
            try:
                if read_manifest(parent) is not None:
                    return parent
            except StoreError:
                return parent  # a store with a damaged manifest is a store too
    return None


def record_lock(out: Path) -> DirLock:
    """Take the lock of a recording into ``out`` (made when missing): StoreError when another recording
    holds it, or when ``out`` lies inside an existing store (a store nested in a store is lost to the outer
    one's ``index --force``)."""
    import fcntl

    out = Path(out).absolute()
    outer = store_inside(out)
    if outer is not None:
        raise StoreError(f"--out {out} is inside the store {outer}; record into a folder outside any store")
    created = None
    if not out.exists():
        out.mkdir(parents=True)
        created = out
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another `neurobrowse record` is writing into {out} now; wait for it to finish (then run "
                         "the same command again to check or resume it), or record into another --out") from None
    return DirLock(fd, created)
