"""The thread pool the partial results run their Numba kernels on, one range of neuron blocks per task."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

BLOCK_TASKS_PER_THREAD = 2  # ranges handed out per thread and chunk (balance vs. hand-off cost)

_POOLS: dict = {}  # thread count -> pool, and "pid" -> the process that made them
_POOLS_LOCK = threading.Lock()


def run_blocks(fn, n_blocks: int) -> None:
    """Run ``fn(b0, b1)`` over block ranges covering ``0 .. n_blocks - 1`` on ``numba.get_num_threads()``
    threads that take the ranges as they come free (a serial nogil kernel per range).

    Why not ``prange``: Numba hands each thread a fixed share of the blocks, so when the read-ahead
    thread (or anything else) takes a core, the chunk waits for the descheduled thread's share; here
    the other thread takes the remaining ranges (benchmarks/bench_index.py measures it). Results do
    not depend on the split: each block's neurons are independent and see their rows in order."""
    threads = min(numba.get_num_threads(), n_blocks)
    if threads <= 1:
        fn(0, n_blocks)
        return
    with _POOLS_LOCK:
        if _POOLS.get("pid") != os.getpid():  # a forked child inherits the pools but not their threads
            _POOLS.clear()
            _POOLS["pid"] = os.getpid()
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="neurobrowse-index")
    per = max(1, n_blocks // (BLOCK_TASKS_PER_THREAD * threads))
    futures = [pool.submit(fn, b, min(n_blocks, b + per)) for b in range(0, n_blocks, per)]
    for f in futures:
        f.result()
