"""The check a finished index passes before a reader uses it (``Store.check_index``).

Readers trust an index's shapes: the neuron table reshapes whole columns, a page indexes one row of
each array, the windows are cut by the ``context_before`` / ``context_after`` attributes. A zarr.json
edited or replaced (shape 512 -> 256, float32 -> int32) would turn into an IndexError deep in a reader
or, worse, into numbers read with the wrong dtype. So before the first read of an index every stored
array's metadata is compared with its checksum record (store.format.seal: what was written, bound to the
array's name) and with the shape the manifest and the index's attributes imply, and the attributes
with the manifest. Checks metadata only (one small JSON per array); the chunk checksums are compared
at each chunk read.
"""

from __future__ import annotations

import json

import numpy as np

from store import schema
from store.format import seal
from store.errors import StoreError

MAX_WINDOW = 4096  # as store.index.run.MAX_WINDOW (not imported: that pulls in the kernels)


def _vocab(st) -> int:
    v = int((st.model_config or {}).get("d_vocab") or 0)
    return v if v > 0 else int(st.tokenizer.get_vocab_size())


def _int(attrs: dict, key: str, lo: int, hi: int | None = None):
    v = attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        return None
    return v


def check_index_arrays(st, hook: str) -> dict[str, tuple]:
    """Check the finished index of ``hook`` in the open Store ``st`` (module doc). Returns, for every
    array with a checksum record, (its chunk checksums, shape, chunks) by array path; StoreError otherwise."""
    from store.format.checked import index_advice

    base = schema.index_path(hook)
    where = f"{st.path}: the index of {hook}"

    def bad(what: str):
        return StoreError(f"{where} is damaged: {what}; {index_advice(st.path, st.manifest)}")

    attrs = st.index_state(hook)
    k = _int(attrs, "k", 1)
    before = _int(attrs, "context_before", 0, MAX_WINDOW) if "context_before" in attrs else schema.CONTEXT_BEFORE
    after = _int(attrs, "context_after", 0, MAX_WINDOW) if "context_after" in attrs else schema.CONTEXT_AFTER
    if k is None:
        raise bad(f"its attribute k is {attrs.get('k')!r}, not a whole number of at least 1")
    if before is None or after is None:
        raise bad(f"its window attributes ({attrs.get('context_before')!r}, {attrs.get('context_after')!r}) are "
                  f"not whole numbers in 0..{MAX_WINDOW}")
    if "n_tokens" in attrs and attrs.get("n_tokens") != st.n_tokens:
        raise bad(f"it says it indexed {attrs.get('n_tokens')!r} tokens, but the store holds {st.n_tokens}")
    units = st.n_units(hook) if hasattr(st, "n_units") else st.d_mlp  # a dictionary: its features
    sizes = {schema.NEURON_DIM: units, "k": k, schema.WINDOW_DIM: before + 1 + after,
             "edge": len(schema.SAMPLE_QUANTILES), "bin": len(schema.SAMPLE_BINS), "sample": schema.SAMPLES_PER_BIN,
             "top_token": schema.TOP_TOKENS, "vocab": _vocab(st)}
    records: dict[str, tuple] = {}
    hist: dict[str, list] = {}
    explained = bool(attrs.get("explained"))
    wanted = {**schema.INDEX_ARRAYS, **(schema.EXPLAIN_ARRAYS if explained else {})}
    for name, (dtype, dims) in wanted.items():
        folder = st.path / base / name
        meta_path = folder / "zarr.json"
        if not meta_path.is_file():
            if name in schema.INDEX_DERIVED:
                continue  # gathered from the tokens (indexes before that stored them)
            raise bad(f"array {name!r} is missing ({meta_path} does not exist)")
        try:
            meta = json.loads(meta_path.read_text())
            shape = [int(x) for x in meta["shape"]]
            got_dtype = str(np.dtype(meta["data_type"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise bad(f"the metadata of array {name!r} ({meta_path}) is unreadable ({type(e).__name__}: {e})") from None
        try:
            crcs = seal.check_record(meta, f"{hook}/{name}")
        except seal.DamagedRecord as e:
            raise bad(f"array {name!r}: {e}") from None
        if got_dtype != dtype:
            raise bad(f"array {name!r} is {got_dtype} in its zarr.json, but an index stores it as {dtype}")
        if len(shape) != len(dims):
            raise bad(f"array {name!r} has shape {shape}, expected {len(dims)} axes ({', '.join(dims)})")
        for d, n in zip(dims, shape):
            if d in sizes and n != sizes[d]:
                raise bad(f"array {name!r} has shape {shape}: its {d} axis is {n}, but the store's manifest and "
                          f"the index's attributes say {sizes[d]}")
        if name in ("hist_counts", "hist_edges"):
            hist[name] = shape
        if crcs is not None:
            records[f"{base}/{name}"] = (crcs, shape, [int(c) for c in meta["chunk_grid"]["configuration"]
                                                       ["chunk_shape"]])
    if len(hist) == 2 and hist["hist_counts"][1] + 1 != hist["hist_edges"][0]:
        raise bad(f"its histogram counts ({hist['hist_counts']}) and edges ({hist['hist_edges']}) do not fit")
    return records


__all__ = ["check_index_arrays"]
