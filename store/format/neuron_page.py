"""One neuron's page (NeuronView): stats, top / bottom / quantile-sampled snippets, histogram, top
tokens, logit effects, explanation and related units, assembled from one neuron-axis chunk of each
index array (decoded straight from their files, with a small cache of recent chunks, or in one
concurrent zarr batch), and a firing's whole passage from the dense chunk. ``st`` is a
store.format.reader.Store; ``Store.neuron`` / ``Store.passage`` are the entry points."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from store import schema
from store.errors import StoreError
from store.format.checked import decode_chunk_file, direct_layout, read_many
from store.format.neuron_table import neuron_table
from store.measures import columns
from store.measures.snippets import (
    Snippet, build_snippets, distinct_names, fill_shared_windows, has_distinct, index_window,
)

CHUNK_CACHE = 256  # decoded index chunks kept (about 10 neuron-chunk groups of one page's arrays)


@dataclass
class NeuronView:
    """Everything the browser / `show` needs for one neuron, read from the index (no dense pass)."""

    hook: str
    layer: int
    neuron: int
    stats: dict
    top: list[Snippet]
    bottom: list[Snippet]
    samples: dict[str, list[Snippet]]
    hist_edges: np.ndarray  # [H + 1] float32
    hist_counts: np.ndarray  # [H] int64
    top_tokens: list[tuple[str, float, int]]  # (token, mean activation, count)
    logit_up: list[tuple[str, float]] = field(default_factory=list)
    logit_down: list[tuple[str, float]] = field(default_factory=list)
    explanation: str = ""  # the automatic rule explanation in words (store.measures.explain), '' when none
    window: tuple[int, int] = (0, 0)  # (before, after) tokens of the index's windows
    context_len: int = 0  # tokens per recorded context
    distinct: bool = True  # top / bottom hold one firing per context
    # a feature's page: the neurons its decoder direction loads on; a neuron's page: the features of the
    # store's dictionaries that read from it (encoder weight). Dicts of hook, unit, weight (Store.related_units)
    related: list[dict] = field(default_factory=list)


# index arrays read per neuron (one neuron-axis chunk each) by Store.neuron
PAGE_ARRAYS = (
    "top_values", "top_positions", "top_context_tokens", "top_context_acts",
    "bottom_values", "bottom_positions", "bottom_context_tokens", "bottom_context_acts",
    "sample_positions", "sample_values", "sample_context_tokens", "sample_context_acts",
    "hist_counts", "quantile_edges", "top_token_ids", "top_token_means", "top_token_counts",
)


def neuron_page(st, hook: str, neuron: int, distinct: bool = True) -> NeuronView:
    st._require_index(hook)
    if not 0 <= int(neuron) < st.n_units(hook):
        raise StoreError(f"{st.unit_word(hook)} {neuron} is out of range: {hook} has {st.unit_word(hook)}s "
                         f"0..{st.n_units(hook) - 1}")
    n = int(neuron)
    layer = schema.parse_hook_name(hook)[0]
    base = schema.logit_path_for(hook)
    have_logits = base in logit_layers(st)
    state = st.index_state(hook) if hook not in st._attrs else st._attrs[hook]
    st._attrs[hook] = state
    use_distinct = distinct and has_distinct(state)
    arrays = list(PAGE_ARRAYS)
    if use_distinct:
        arrays += [nm for kind in ("top", "bottom") for r, nm in distinct_names(kind).items() if r[:2] == "d_"]
    derived = [a for a in arrays if a in schema.INDEX_DERIVED and not st._index_stores(hook, a)]
    arrays = [a for a in arrays if a not in derived]
    names = [f"{schema.index_path(hook)}/{a}" for a in arrays]
    if have_logits:
        names += [f"{base}/{k}" for k in schema.LOGIT_ARRAYS]
    if hook not in st._hist_edges:
        st._hist_edges[hook] = st.index_array(hook, "hist_edges")[:]
    rows = neuron_rows(st, names, n)
    page = dict(zip(arrays, rows[:len(arrays)]))
    rest = rows[len(arrays):]
    before, after = index_window(state)
    if state.get("shared_windows"):  # distinct firings also in the raw lists: their windows are there
        for name, (pos, raw_pos, raw) in schema.INDEX_SHARED_WINDOWS.items():
            if name in page:
                page[name] = fill_shared_windows(page[name], page[pos], page[raw_pos], page[raw])
    if derived:  # the token windows: one gather from the token chunks for every list of the page
        pos = [np.asarray(page[schema.INDEX_DERIVED[a]]) for a in derived]
        flat = st.window_tokens(np.concatenate([p.ravel() for p in pos]), before, after)
        o = 0
        for a, p in zip(derived, pos):
            page[a] = flat[o:o + p.size].reshape(p.shape + (-1,))
            o += p.size
    table = neuron_table(st, hook)
    stats = {k: float(table[k][n]) for k in columns.NUMERIC if k != "neuron"}
    stats["std"] = float(np.sqrt(max(stats["var"], 0.0)))
    stats["n_tokens"] = st.n_tokens
    stats["quantiles"] = {str(q): float(v) for q, v in zip(schema.SAMPLE_QUANTILES, page["quantile_edges"])}
    top_tokens = [(s, float(m), int(c))
                  for s, m, c, i in zip(st.token_strings(page["top_token_ids"]), page["top_token_means"],
                                        page["top_token_counts"], page["top_token_ids"]) if i >= 0]

    def snippets(kind: str | None = None, b: int | None = None) -> list[Snippet]:
        if b is not None:  # a quantile bin: random samples, never cut to one per context
            return snippets_of(st, page["sample_positions"][b], page["sample_values"][b],
                                  page["sample_context_tokens"][b], page["sample_context_acts"][b],
                                  before, distinct=False)
        nm = distinct_names(kind)
        if use_distinct:
            return snippets_of(st, page[nm["d_positions"]], page[nm["d_values"]], page[nm["d_tokens"]],
                                  page[nm["d_acts"]], before, more=page[nm["d_more"]])
        return snippets_of(st, page[nm["positions"]], page[nm["values"]], page[nm["tokens"]], page[nm["acts"]],
                              before, distinct=distinct)

    samples = {name: snippets(b=b) for b, name in enumerate(schema.SAMPLE_BINS)}
    up = down = []
    if have_logits:
        ut, uv, dt, dv = rest[:4]
        up = list(zip(st.token_strings(ut), map(float, uv)))
        down = list(zip(st.token_strings(dt), map(float, dv)))
    return NeuronView(
        hook=hook, layer=layer, neuron=n, stats=stats, top=snippets("top"), bottom=snippets("bottom"),
        samples=samples, hist_edges=np.asarray(st._hist_edges[hook]),
        hist_counts=np.asarray(page["hist_counts"]), top_tokens=top_tokens, logit_up=up, logit_down=down,
        explanation=str(table["explanation"][n]),
        window=(before, after), context_len=st.context_len, distinct=distinct,
        related=st.related_units(hook, n),
    )


def passage(st, hook: str, neuron: int, position: int, around: int = 256) -> Snippet:
    """The whole recorded context of the firing at ``position`` (every token the model saw with it,
    with ``neuron``'s activation at each, read from the dense chunk) and up to ``around`` tokens of
    its document before and after that context (``tokens[:ctx_lo]`` / ``tokens[ctx_hi:]``, activation
    0: the model did not see them with this context). Reads one dense chunk and a few token chunks."""
    if not 0 <= int(position) < st.n_tokens:
        raise StoreError(f"position {position} is outside {st.path} (0..{st.n_tokens - 1})")
    if not 0 <= int(neuron) < st.n_units(hook):
        raise StoreError(f"{st.unit_word(hook)} {neuron} is out of range: {hook} has {st.unit_word(hook)}s "
                         f"0..{st.n_units(hook) - 1}")
    p, L = int(position), st.context_len
    c0 = p // L * L
    c1 = min(st.n_tokens, c0 + L)
    lo, hi = max(0, c0 - around), min(st.n_tokens, c1 + around)
    docs = np.asarray(st.doc_starts[lo:hi])
    before_starts = np.flatnonzero(docs[:c0 - lo + 1])  # document starts at or before the context start
    if len(before_starts):
        lo += int(before_starts[-1])
    after_starts = np.flatnonzero(docs[c1 - lo:]) if c1 < hi else np.zeros(0, np.int64)
    if len(after_starts):
        hi = c1 + int(after_starts[0])
    ids = np.asarray(st.tokens[lo:hi]).astype(np.int32)
    chunk = p // st.chunk_tokens
    rows = st.read_chunk(hook, chunk)
    r0 = chunk * st.chunk_tokens
    acts = np.zeros(hi - lo, np.float32)
    acts[c0 - lo:c1 - lo] = rows[c0 - r0:c1 - r0, int(neuron)].astype(np.float32)
    return Snippet(position=p, value=float(acts[p - lo]), token_ids=ids, tokens=st.token_strings(ids),
                   acts=acts, center=p - lo, ctx_lo=c0 - lo, ctx_hi=c1 - lo)


def neuron_rows(st, names: list[str], n: int) -> list[np.ndarray]:
    """Row ``n`` of each named [neuron, ...] array. Arrays in the plain zstd + crc32c layout are
    decoded directly from their chunk files (with a small cache of recent chunks, so stepping
    to the next neuron is free); others go through zarr in one concurrent batch."""
    out: list = [None] * len(names)
    slow = []
    for i, name in enumerate(names):
        arr = st._array(name)
        if name not in st._direct:
            st._direct[name] = direct_layout(arr)
        if st._direct[name] != "zstd":
            slow.append(i)
            continue
        ci = n // arr.chunks[0]
        chunk = st._chunk_cache.get((name, ci))
        if chunk is None:
            coords = (ci,) + (0,) * (arr.ndim - 1)
            chunk = decode_chunk_file(st.path, name, arr, ci, "zstd", st._expected_crc(name, coords),
                                       "its array's checksum record holds")
            st._chunk_cache[(name, ci)] = chunk
            while len(st._chunk_cache) > CHUNK_CACHE:
                st._chunk_cache.pop(next(iter(st._chunk_cache)))
        out[i] = chunk[n % arr.chunks[0]]
    if slow:
        for i, row in zip(slow, read_many([(st._array(names[i]), (n,)) for i in slow])):
            out[i] = row
    return out


def logit_layers(st) -> set[str]:
    if "#logit" not in st._tables:
        try:
            g = st.group[schema.LOGIT_GROUP]
            st._tables["#logit"] = {f"{schema.LOGIT_GROUP}/{k}": None for k in g.group_keys()}
        except KeyError:
            st._tables["#logit"] = {}
    return set(st._tables["#logit"])


def snippets_of(st, positions, values, ctx_tokens, ctx_acts, before: int, *, more=None,
              distinct: bool = True) -> list[Snippet]:
    """positions [m], values [m], ctx_tokens / ctx_acts [m, window] -> Snippets (store.measures.snippets)."""
    return build_snippets(positions, values, ctx_tokens, ctx_acts, st._strings(ctx_tokens), before=before,
                          context_len=st.context_len, more=more, distinct=distinct)

