"""Where a bounded ``PartialIndex`` keeps its folded float16 means (``token_cold``, ``record --index --token-rows``).

The table is uint16 [2 parities, vocabulary, neurons] per hook, written row by row in order of first fold: 0.58 GiB
per GPT-2-small layer once every token is folded, 6.9 GiB for its 12 layers indexed at once, the largest part of
``record --index``'s memory. In memory it is a numpy array whose unused rows are zero pages. With a folder it is a
memory-mapped, already unlinked temporary file in that folder (its blocks allocated up front, so a full disk is an
error at the start, not a bus error later): the same bytes, read and written the same way, but the pages the
process touched go back to the page cache after each use (``release_pages``), so they are not part of the
process's resident memory, and the kernel writes them to disk when it needs the memory.
"""

from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np

from store.errors import StoreError


def table_bytes(vocab: int, n_neurons: int) -> int:
    """Bytes of one hook's folded-means table: uint16 [2, vocab, n_neurons]."""
    return 2 * int(vocab) * int(n_neurons) * 2


def new_table(vocab: int, n_neurons: int, folder=None) -> np.ndarray:
    """uint16 [2, vocab, n_neurons] of zeros: in memory (``folder`` None) or in an unlinked temporary file in
    ``folder`` (memory-mapped; see the module docstring). A StoreError when the folder cannot hold it."""
    shape = (2, int(vocab), int(n_neurons))
    size = table_bytes(vocab, n_neurons)
    if folder is None or size == 0:
        return np.zeros(shape, np.uint16)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".folded-means-") as f:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(f.fileno(), 0, size)  # the blocks now: ENOSPC here, not SIGBUS at a write
            else:
                f.truncate(size)
            mm = mmap.mmap(f.fileno(), size)  # the mapping keeps the (unlinked) file after the close
    except OSError as e:
        raise StoreError(f"cannot keep the folded per-token means ({size / 1e9:.2f} GB per hook) in a temporary "
                         f"file in {folder} ({e.strerror or e}); free disk space there, or record fewer layers "
                         f"per store (--layers)") from None
    return np.frombuffer(mm, np.uint16).reshape(shape)


def file_mapping(table: np.ndarray | None) -> mmap.mmap | None:
    """The file mapping behind ``table`` (or a view of it); None for a table in memory."""
    b = table
    while isinstance(b, np.ndarray):
        b = b.base
    if isinstance(b, memoryview):  # np.frombuffer's base
        b = b.obj
    return b if isinstance(b, mmap.mmap) else None


def release_pages(table: np.ndarray | None) -> None:
    """Hand the pages of a file-backed table that this process touched back to the page cache (they stay there,
    written back to the file when the kernel wants the memory; the next read maps them again). A table in
    memory: nothing."""
    mm = file_mapping(table)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)  # a shared file mapping: the data stays in the file / page cache


__all__ = ["file_mapping", "new_table", "release_pages", "table_bytes"]
