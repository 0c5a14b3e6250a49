"""Recording as a pipeline: the forward pass fills chunks, a background thread writes them.

The recorder (solu_core.record) computes one work group of whole chunks at a time and hands it to
``ChunkPipeline.put``. A writer thread writes each chunk of the group (tokens, doc_starts, then every
hook, each array's chunk followed by its completion marker, exactly as an inline ``write_chunks``
does) and then hands the chunk's activations to every plugged-in ``ChunkConsumer``. While the thread
writes group g, the model runs group g+1. At most ``depth`` groups wait in the queue, so memory stays
bounded and a slow disk slows the model down instead of filling RAM.

Same bytes and same resume guarantees as writing inline: the same arrays are written with the same
data in the same order, and a marker is only ever set after its chunk file is on disk, so a process
killed at any point (kill -9) leaves markers naming exactly the chunks that are safe; the same
command recomputes the rest. Groups waiting in the queue when the process dies are simply lost and
recomputed.

Consumers (``ChunkConsumer``) see the data on its way to disk, e.g. an index built while recording:

- ``consume(hook, chunk_index, acts, tokens)``: one hook's chunk, called on the writer thread after
  that chunk (all its arrays) is on disk with its markers; ``acts`` [rows, d_mlp] float16,
  ``tokens`` [rows] int32; chunks arrive in increasing index. Chunks already on disk when a
  recording resumes are not handed over again, but a chunk can be handed over twice across runs
  (its work group was recomputed because another chunk of the group was missing): a consumer keeps
  track of the chunk indices it has. A chunk whose pass-1 partial the recorder computed beside the
  model (``Chunk.partials``, the torch backend of ``record --index``) is handed over as
  ``consume(hook, chunk_index, acts, tokens, partial=...)``.
- ``save_state()``: after every work group; everything handed over so far is on disk.
- ``finish()``: once, after the store's ``finish()`` (every chunk on disk, ``complete`` set).

The arrays a consumer receives are read-only views shared with the writer; copy before changing them.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from store import schema
from store.format.writer import StoreWriter


@dataclass
class Chunk:
    """One store chunk's worth of recorded rows."""

    index: int  # chunk index along the token axis
    tokens: np.ndarray  # [rows] int32 token ids
    doc_starts: np.ndarray  # [rows] uint8, 1 where a document begins
    acts: dict[str, np.ndarray]  # hook name -> [rows, d_mlp] float16
    # hook name -> the chunk's pass-1 partial (store.index.PartialIndex) computed beside the model (the
    # recorder's torch backend, solu_core.device_index); handed to consumers as consume(..., partial=)
    partials: dict = field(default_factory=dict)


class ChunkConsumer(Protocol):
    """Something that sees every recorded chunk after it is on disk (see the module docstring)."""

    def consume(self, hook: str, chunk_index: int, acts: np.ndarray, tokens: np.ndarray, **partial) -> None: ...

    def save_state(self) -> None: ...

    def finish(self) -> None: ...


def write_chunks(writer: StoreWriter, chunks: list[Chunk], pending: dict[str, set[int]]) -> int:
    """Write the pending arrays of ``chunks`` (each chunk file, then its marker). Returns the
    activation bytes written. ``pending``: per-token array name -> chunk indices still to write."""
    n_bytes = 0
    for c in chunks:
        if c.index in pending[schema.TOKENS]:
            writer.write_chunk(schema.TOKENS, c.index, c.tokens)
        if c.index in pending[schema.DOC_STARTS]:
            writer.write_chunk(schema.DOC_STARTS, c.index, c.doc_starts)
        for hook, acts in c.acts.items():
            if c.index in pending.get(hook, ()):  # a store without dense activations has no hook arrays
                writer.write_chunk(hook, c.index, acts)
                n_bytes += acts.nbytes
    return n_bytes


class ChunkPipeline:
    """Writes work groups of chunks on a background thread (``threaded=False``: inline, in ``put``).

    Use as a context manager, or call ``finish()`` at the end and ``abort()`` on an error. Timing:
    ``write_s`` is the writer's busy time (writes + consumers), ``wait_s`` the time ``put`` and
    ``close`` spent waiting for it, i.e. the share of the writer the forward pass did not hide."""

    _STOP = object()

    def __init__(self, writer: StoreWriter, pending: dict[str, set[int]], consumers: list[ChunkConsumer] = (),
                 *, threaded: bool = True, depth: int = 1) -> None:
        self.writer = writer
        self.pending = pending
        self.consumers = list(consumers)
        self.threaded = threaded
        self.write_s = 0.0
        self.wait_s = 0.0
        self.bytes = 0
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="neurobrowse-chunk-writer", daemon=True)
            self._thread.start()

    # ---- the writer side -------------------------------------------------------------------------
    def _write_group(self, chunks: list[Chunk]) -> None:
        t0 = time.perf_counter()
        for c in chunks:
            if self._abort.is_set():
                return
            for a in c.acts.values():
                a.flags.writeable = False
            self.bytes += write_chunks(self.writer, [c], self.pending)
            for consumer in self.consumers:
                for hook, acts in c.acts.items():
                    if hook in c.partials:
                        consumer.consume(hook, c.index, acts, c.tokens, partial=c.partials[hook])
                    else:
                        consumer.consume(hook, c.index, acts, c.tokens)
        for consumer in self.consumers:
            consumer.save_state()
        self.write_s += time.perf_counter() - t0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is self._STOP:
                    return
                if self._error is None and not self._abort.is_set():
                    self._write_group(item)
            except BaseException as e:  # handed to the producer at its next put / close
                self._error = e
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # ---- the producer side -----------------------------------------------------------------------
    def put(self, chunks: list[Chunk]) -> None:
        """Hand over one work group's chunks (in increasing index). Blocks while ``depth`` groups wait."""
        self._raise_error()
        if not self.threaded:
            self._write_group(chunks)
            return
        t0 = time.perf_counter()
        self._queue.put(chunks)
        self.wait_s += time.perf_counter() - t0

    def close(self) -> None:
        """Wait until everything handed over is written; stop the thread. Re-raises a writer error."""
        if self._thread is not None:
            t0 = time.perf_counter()
            self._queue.put(self._STOP)
            self._thread.join()
            self._thread = None
            self.wait_s += time.perf_counter() - t0
        self._raise_error()

    def abort(self) -> None:
        """Stop after the chunk being written (its marker follows it); drop the groups still queued."""
        self._abort.set()
        if self._thread is not None:
            self._queue.put(self._STOP)
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """close(), then the store's finish() (markers checked, ``complete`` set), then each consumer's."""
        self.close()
        self.writer.finish()
        for consumer in self.consumers:
            consumer.finish()

    def __enter__(self) -> "ChunkPipeline":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
