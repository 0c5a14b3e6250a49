"""Reading whole chunks of one hook of a store, with read-ahead threads, every failure turned into
an error that names the array and the chunk key."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from store import schema
from store.errors import CorruptChunkError, StoreError

# Chunk reads in flight during a pass, each on its own thread. Two concurrent reads get more out of a
# disk than one (benchmarks/bench_index.py, floor_cold), and a second buffered chunk rides out a slow
# read; more would only take memory (8 MB per chunk) and cores from the kernels on a small machine.
READ_AHEAD = 2


def open_store(store):
    """A Store from a path, or the Store given (``store.format.reader.as_store``)."""
    from store.format.reader import as_store

    return as_store(store)


def vocab_size(st) -> int:
    """The vocabulary size of a store's model (its tokenizer's when the config does not say)."""
    cfg = st.model_config or {}
    v = int(cfg.get("d_vocab") or 0)
    if v <= 0:
        v = int(st.tokenizer.get_vocab_size())
    return v


def vocab_from_manifest(manifest: dict, path) -> int:
    """``vocab_size`` from a manifest (the store at ``path`` opened only when its config does not say)."""
    v = int((manifest.get("model_config") or {}).get("d_vocab") or 0)
    return v if v > 0 else vocab_size(open_store(path))


class ChunkSource:
    """Reads whole chunks of one hook (and the token ids) of a store, turning every failure into an
    error that names the array and the chunk key."""

    def __init__(self, st, hook: str, reader=None):
        """``reader(c)``: float16 [rows, units] of chunk c, for a hook whose chunks are computed elsewhere
        (a dictionary's features of a --dense none store, computed by the recorded model); None: from
        the store (a dictionary's features from its source hook's dense chunks)."""
        if hook not in st.hooks:
            raise StoreError(f"{st.path} has no hook {hook!r}; it has {', '.join(st.hooks)}")
        self.reader = reader
        self.features = schema.is_feature_hook(hook)
        self.st = st
        self.hook = hook
        self.path = Path(st.path)
        self.ct = int(st.chunk_tokens)
        self.n_tokens = int(st.n_tokens)
        self.context_len = int(st.context_len)
        if self.ct % self.context_len:
            raise StoreError(f"{self.path}: chunk_tokens {self.ct} is not a multiple of context_len "
                             f"{self.context_len}; the indexer needs whole contexts per chunk")
        self.n_chunks = schema.n_chunks(self.n_tokens, self.ct)
        self.n_neurons = int(st.n_units(hook)) if hasattr(st, "n_units") else int(st.d_mlp)
        self.dense = bool(getattr(st, "dense", True))  # False: tokens only (a store recorded with --dense none)
        if reader is not None:
            self.dense = True  # its chunks come from the reader
        elif self.features:
            st.dictionary(hook)  # loaded and checked now
            if self.dense:
                st.activations(schema.feature_source(hook)[0])
        elif self.dense:
            st.activations(hook)  # opened now: damaged metadata is an error before anything is written
        self.vocab = vocab_size(st)
        self._tokens: np.ndarray | None = None

    def _read(self, name: str, arr, c: int) -> np.ndarray:
        """Chunk c of ``name`` through Store.read_chunk, which raises CorruptChunkError naming the
        chunk for a missing, truncated or damaged file (its direct path and CheckedLocalStore alike);
        any other decode failure is turned into one here."""
        try:
            return np.asarray(self.st.read_chunk(name, c))
        except CorruptChunkError:
            raise
        except Exception as e:  # a decode error zarr raises in its own words
            key = arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))
            raise CorruptChunkError(f"chunk {name}/{key} of {self.path} is corrupt or truncated "
                                    f"({type(e).__name__}: {e}); re-record the store (or that chunk)") from e

    def chunk(self, c: int) -> np.ndarray:
        """uint16 [R, N] float16 bits of chunk c."""
        if self.reader is not None or self.features:
            a = self.reader(c) if self.reader is not None else self.st.read_chunk(self.hook, c)
            return np.ascontiguousarray(a, np.float16).view(np.uint16)
        return self._read(self.hook, self.st.activations(self.hook), c).view(np.uint16)

    def tokens(self) -> np.ndarray:
        """int32 [n_tokens] every token id, read chunk by chunk (checked against the vocabulary)."""
        if self._tokens is None:
            parts = [self.token_chunk(c) for c in range(self.n_chunks)]
            self._tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return self._tokens

    def token_chunk(self, c: int) -> np.ndarray:
        """int32 [R] the token ids of chunk c (checked against the vocabulary)."""
        arr = self.st.tokens
        toks = self._read(schema.TOKENS, arr, c).astype(np.int32, copy=False)
        if toks.size and (toks.min() < 0 or toks.max() >= self.vocab):
            bad = int(np.flatnonzero((toks < 0) | (toks >= self.vocab))[0])
            key = arr.metadata.encode_chunk_key((c,))
            raise CorruptChunkError(f"chunk {schema.TOKENS}/{key} of {self.path} holds token id "
                                    f"{int(toks[bad])} outside the vocabulary (0..{self.vocab - 1})")
        return toks

    def _prefetched(self, read, start: int, stop: int, prefetch: bool):
        """Yield (c, row0, read(c)) for chunks start..stop-1, with READ_AHEAD reads in flight on as
        many threads (file reads and Crc32c release the GIL)."""
        if not prefetch:
            for c in range(start, stop):
                yield c, c * self.ct, read(c)
            return
        with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
            pending = deque(pool.submit(read, c) for c in range(start, min(stop, start + READ_AHEAD)))
            nxt = start + len(pending)
            for c in range(start, stop):
                got = pending.popleft().result()
                if nxt < stop:
                    pending.append(pool.submit(read, nxt))
                    nxt += 1
                yield c, c * self.ct, got

    def chunks_with_tokens(self, start: int, stop: int, prefetch: bool = True):
        """Yield (c, row0, bits, tokens) for chunks start..stop-1 (tokens: int32 [R] of that chunk
        only), reading ahead: what a pass over part of a store needs, without reading every token id
        of the store first."""
        def read(c):
            return self.chunk(c), self.token_chunk(c)

        for c, row0, (bits, toks) in self._prefetched(read, start, stop, prefetch):
            yield c, row0, bits, toks

    def chunks(self, start: int, stop: int, prefetch: bool = True):
        """Yield (c, row0, bits) for chunks start..stop-1, reading ahead."""
        yield from self._prefetched(self.chunk, start, stop, prefetch)

    def check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.n_chunks:
            raise ValueError(f"chunk range [{start}, {stop}) is outside 0..{self.n_chunks} of {self.hook}")


__all__ = ["READ_AHEAD", "ChunkSource", "open_store", "vocab_size"]
