"""Index arrays a Store assembles instead of reading them whole from disk: the token windows derived
from the store's tokens (schema.INDEX_DERIVED) and the distinct lists' windows stored shared with the
raw lists (schema.INDEX_SHARED_WINDOWS). Both offer what readers of a stored zarr array use. And the
token gather under them (``tokens_at``): token ids at any positions, through a cache of decoded token chunks.
``store`` / ``st``: a store.format.reader.Store (not imported here: the reader imports this room)."""

from __future__ import annotations

import numpy as np

from store import schema
from store.format.checked import decode_chunk_file, direct_layout
from store.measures.snippets import fill_shared_windows

_TOKEN_CACHE_BYTES = 64 * 2**20  # decoded token chunks kept for the derived token windows (a 16M-token store whole)
_TOKEN_WHOLE_READ = 256  # a gather touching more token chunks than this reads the whole tokens array


class WindowTokens:
    """A derived index array (schema.INDEX_DERIVED): int32 [neuron, ..., window] token ids around each
    position of the positions array it derives from, gathered from the store's tokens when indexed.
    Offers what readers of the stored arrays use: shape, ndim, dtype, ``[...]`` / basic selections
    and ``get_orthogonal_selection``."""

    def __init__(self, store, hook: str, name: str):
        self.store = store
        self.name = name
        self.positions = store.index_array(hook, schema.INDEX_DERIVED[name])
        self.before, self.after = store.index_window(hook)
        self.shape = tuple(self.positions.shape) + (self.before + 1 + self.after,)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.int32)

    def _windows(self, pos) -> np.ndarray:
        return self.store.window_tokens(np.asarray(pos), self.before, self.after)

    def __getitem__(self, sel) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        if any(s is Ellipsis for s in sel):
            return self._windows(self.positions[...])[sel]
        lead, rest = sel[:self.ndim - 1], sel[self.ndim - 1:]
        out = self._windows(self.positions[lead])
        return out[(Ellipsis,) + rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def get_orthogonal_selection(self, sel) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        lead, rest = sel[:self.ndim - 1], sel[self.ndim - 1:]
        out = self._windows(self.positions.get_orthogonal_selection(lead))
        return out[(Ellipsis,) + rest] if rest else out


class SharedWindows:
    """A distinct list's windows stored with shared windows (schema.INDEX_SHARED_WINDOWS): the stored
    array completed from the raw list's windows, for the rows (neurons) selected. Offers what readers of
    the stored arrays use: shape, ndim, dtype, ``[...]`` / basic selections and ``get_orthogonal_selection``."""

    def __init__(self, store, hook: str, name: str):
        base = schema.index_path(hook)
        pos, raw_pos, raw = schema.INDEX_SHARED_WINDOWS[name]
        self.arrays = [store._array(f"{base}/{a}") for a in (name, pos, raw_pos, raw)]
        self.shape, self.ndim, self.dtype = self.arrays[0].shape, self.arrays[0].ndim, self.arrays[0].dtype

    def _rows(self, neurons, orthogonal: bool) -> np.ndarray:
        if orthogonal:
            parts = [np.asarray(a.get_orthogonal_selection((neurons,))) for a in self.arrays]
        else:
            parts = [np.asarray(a[neurons]) for a in self.arrays]
        return fill_shared_windows(*parts)

    def _select(self, sel, orthogonal: bool) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        if not sel or any(s is Ellipsis for s in sel):
            return self._rows(slice(None), False)[sel]
        out = self._rows(sel[0], orthogonal)
        keep = 0 if isinstance(sel[0], (int, np.integer)) else 1  # an int selection drops the neuron axis
        if not orthogonal:
            return out[(slice(None),) * keep + tuple(sel[1:])]
        for i in reversed(range(len(sel) - 1)):  # one axis at a time, the last first (earlier axes stay put)
            s, axis = sel[1 + i], keep + i
            out = out[(slice(None),) * axis + (s,)] if isinstance(s, slice) else np.take(out, s, axis)
        return out

    def __getitem__(self, sel) -> np.ndarray:
        return self._select(sel, False)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def get_orthogonal_selection(self, sel) -> np.ndarray:
        return self._select(sel, True)


def tokens_at(st, positions: np.ndarray) -> np.ndarray:
    """int32 token ids at ``positions`` (int64 in 0..n_tokens-1, any order): read from the token
    chunks they fall in, or from the whole tokens array for a gather that touches many chunks.
    Decoded chunks are cached (up to _TOKEN_CACHE_BYTES: browsing a store of up to ~16M tokens
    ends up reading each token chunk once). Each chunk file's own Crc32c is checked (not its
    completion marker: one file read per chunk instead of two, as the passage reads do)."""
    q = np.asarray(positions, dtype=np.int64)
    if q.size == 0:
        return np.empty(q.shape, np.int32)
    if -1 in st._token_chunks:  # the whole array is cached
        return st._token_chunks[-1][q]
    ct = st.chunk_tokens
    chunk = q // ct
    need = np.unique(chunk)
    if need.size > _TOKEN_WHOLE_READ:
        return whole_tokens(st)[q]
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], need, side="left").tolist() + [q.size]
    out = np.empty(q.shape, np.int32)
    for i, c in enumerate(need.tolist()):
        toks = st._token_chunks.get(c)
        if toks is None:
            toks = st._token_chunks[c] = token_chunk(st, c)
            st._token_cache_bytes += toks.nbytes
            while st._token_cache_bytes > _TOKEN_CACHE_BYTES:
                st._token_cache_bytes -= st._token_chunks.pop(next(iter(st._token_chunks))).nbytes
        idx = order[bounds[i]:bounds[i + 1]]
        out[idx] = toks[q[idx] - c * ct]
    return out


def whole_tokens(st) -> np.ndarray:
    """int32 [n_tokens] every token id, kept while it is at most _TOKEN_CACHE_BYTES (then it replaces
    the cached chunks)."""
    whole = st._token_chunks.get(-1)
    if whole is None:
        whole = np.concatenate([st._token_chunks.get(c) if c in st._token_chunks else token_chunk(st, c)
                                for c in range(st.n_chunks)])
        if whole.nbytes <= _TOKEN_CACHE_BYTES:
            st._token_chunks.clear()
            st._token_chunks[-1] = whole
            st._token_cache_bytes = whole.nbytes
    return whole


def token_chunk(st, c: int) -> np.ndarray:
    """int32 token chunk ``c`` (see tokens_at)."""
    arr = st.tokens
    if schema.TOKENS not in st._direct:
        st._direct[schema.TOKENS] = direct_layout(arr)
    if st._direct[schema.TOKENS] is None or arr.chunks[0] != st.chunk_tokens:
        return np.asarray(st.read_chunk(schema.TOKENS, c), dtype=np.int32)
    stop = min(st.n_tokens, (c + 1) * st.chunk_tokens) - c * st.chunk_tokens
    chunk = decode_chunk_file(st.path, schema.TOKENS, arr, c, st._direct[schema.TOKENS])
    return np.asarray(chunk[:stop], dtype=np.int32)
