"""Checks a saved resume state passes before it is merged into anything (``IndexGroup.load_state``).

A damaged state must never be merged: a wrong token count ``n`` in its attributes turns into a wrong
variance of every neuron, a chunk of the histogram read as zeros into wrong quantiles. So a state read
back from disk is checked at this edge, before the indexer sees it: its checksum records
(store.format.seal: every chunk file where it was written, metadata as written, attributes sealed), its
fields' shapes and dtypes against the store's manifest, and the invariants every partial result keeps
(one histogram count per token, the token counts sum to the tokens covered, the ranges are the chunks
its progress entry names). Any failure raises DamagedState; the caller discards the state and
computes it again from the data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from store import schema
from store.format import seal
from store.index.kernels.histogram import HIST_BINS



class DamagedState(Exception):
    """A saved resume state that is not what was written (the message says what is wrong)."""


def read_checked_part(cls, root: Path, group, bind: str):
    """The partial result of class ``cls`` saved in the zarr group ``group`` (one slot), after checking
    its checksum records (``bind``: the name its arrays were sealed under, e.g. 'HOOK/state/p1').
    DamagedState when anything does not match; the state is then not read any further."""
    try:
        attrs = dict(group.attrs)
    except Exception as e:  # noqa: BLE001 - unreadable metadata of a saved state is a damaged state
        raise DamagedState(f"its attributes cannot be read ({type(e).__name__}: {e})") from None
    if seal.attrs_ok(attrs) is False:
        raise DamagedState("its attributes (token count, chunk ranges) do not match their checksum")
    fields = {}
    try:
        names = list(group.array_keys())
    except Exception as e:  # noqa: BLE001
        raise DamagedState(f"its arrays cannot be listed ({type(e).__name__}: {e})") from None
    for n in names:
        folder = Path(root) / group.path / n
        try:
            meta = json.loads((folder / "zarr.json").read_text())
            seal.check_files(folder, meta, f"{bind}/{n}")
            fields[n] = np.asarray(group[n][...])
        except seal.DamagedRecord as e:
            raise DamagedState(f"array {n!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a failing Crc32c, an undecodable chunk, garbage metadata
            raise DamagedState(f"array {n!r} cannot be read ({type(e).__name__}: {e})") from None
    kwargs = {f.name: fields.get(f.name, attrs.get(f.name)) for f in dataclasses.fields(cls)}
    try:
        kwargs["ranges"] = [tuple(int(x) for x in r) for r in attrs["ranges"]]
        return cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - missing or mistyped fields
        raise DamagedState(f"its fields do not make a {cls.__name__} ({type(e).__name__}: {e})") from None


def _shape(part, name: str, want: tuple, dtype) -> None:
    a = getattr(part, name, None)
    if not isinstance(a, np.ndarray):
        raise DamagedState(f"its field {name!r} is missing")
    if tuple(a.shape) != tuple(want) or a.dtype != np.dtype(dtype):
        raise DamagedState(f"its field {name!r} is {a.dtype} {list(a.shape)}, expected {np.dtype(dtype)} {list(want)}")


def check_state(which: str, part, *, chunk_stop: int, n_neurons: int, vocab: int, n_tokens: int,
                chunk_tokens: int, hook: str) -> None:
    """Raise DamagedState unless ``part`` (a saved "p1" / "s1" / "p2" result) is a whole, consistent result
    of chunks 0..chunk_stop of ``hook`` of a store with these sizes. Cheap next to a pass over one chunk."""
    if getattr(part, "hook", hook) != hook:
        raise DamagedState(f"it is the state of another hook ({part.hook!r})")
    if [tuple(r) for r in part.ranges] != ([(0, int(chunk_stop))] if chunk_stop else []):
        raise DamagedState(f"it covers chunks {part.ranges}, but its progress entry says 0..{chunk_stop}")
    before, after = int(part.before), int(part.after)
    if before < 0 or after < 0:
        raise DamagedState(f"its window {before},{after} is negative")
    N, W = int(n_neurons), before + 1 + after
    S = schema.SAMPLES_PER_BIN
    if which == "p1":
        k = int(part.k)
        if k < 1:
            raise DamagedState(f"its k is {k}")
        covered = min(int(chunk_stop) * int(chunk_tokens), int(n_tokens))
        if int(part.n) != covered:
            raise DamagedState(f"it says it covers {part.n} tokens, but chunks 0..{chunk_stop} hold {covered}")
        for name, shape, dt in (("top_key", (N, k), "int32"), ("top_pos", (N, k), "int64"),
                                ("top_win", (N, k, W), "uint16"), ("bot_key", (N, k), "int32"),
                                ("bot_pos", (N, k), "int64"), ("bot_win", (N, k, W), "uint16"),
                                ("hist", (N, HIST_BINS), "int64"), ("npos", (N,), "int64"),
                                ("mean", (N,), "float64"), ("m2", (N,), "float64"), ("m3", (N,), "float64"),
                                ("m4", (N,), "float64"), ("token_count", (2, int(vocab)), "int64"),
                                ("dtop_key", (N, k), "int32"), ("dtop_pos", (N, k), "int64"),
                                ("dtop_win", (N, k, W), "uint16"), ("dtop_more", (N, k), "int32"),
                                ("dbot_key", (N, k), "int32"), ("dbot_pos", (N, k), "int64"),
                                ("dbot_win", (N, k, W), "uint16"), ("dbot_more", (N, k), "int32")):
            _shape(part, name, shape, dt)
        T = int(part.token_ids.size)
        _shape(part, "token_sum", (2, T, N), "float32")
        if int(part.token_rows_max or 0) < 0:
            raise DamagedState(f"its bound of per-token rows is {part.token_rows_max}")
        if part.token_rows_max:
            _shape(part, "token_used", (T,), "int64")
        if part.token_cold is not None or part.token_cold_count is not None:
            C = int(getattr(part.token_cold_ids, "size", -1))
            _shape(part, "token_cold_ids", (C,), "int32")
            _shape(part, "token_cold", (2, C, N), "uint16")
            _shape(part, "token_cold_count", (2, C), "int64")
            cid = part.token_cold_ids
            if C and (cid.min() < 0 or cid.max() >= vocab or np.unique(cid).size != C):
                raise DamagedState("its folded per-token rows name token ids out of range or twice")
            if (part.token_cold_count < 0).any() or (part.token_cold_count > part.token_count[:, cid]).any():
                raise DamagedState("its folded per-token counts exceed the token counts")
        if (part.hist.sum(1) != covered).any():
            raise DamagedState("its histograms do not count one activation per token covered")
        if int(part.token_count.sum()) != covered or (part.token_count < 0).any():
            raise DamagedState("its token counts do not sum to the tokens covered")
        if ((part.npos < 0) | (part.npos > covered)).any():
            raise DamagedState("its density counts are out of range")
        ids = part.token_ids
        if T and (ids.min() < 0 or ids.max() >= vocab or np.unique(ids).size != T):
            raise DamagedState("its per-token rows name token ids out of range or twice")
        if not all(np.isfinite(getattr(part, m)).all() for m in ("mean", "m2", "m3", "m4")):
            raise DamagedState("its moments are not finite numbers")
        if (part.m2 < 0).any() or (part.m4 < 0).any():
            raise DamagedState("its sums of squared deviations are negative")
        for pos in (part.top_pos, part.bot_pos, part.dtop_pos, part.dbot_pos):
            if ((pos < -1) | (pos >= covered)).any():
                raise DamagedState("its top / bottom lists hold positions outside the chunks covered")
        return
    B = len(schema.SAMPLE_BINS) if which == "p2" else None
    if which == "s1":
        from store.index.unit_samples import N_UNITS

        B = N_UNITS
        _shape(part, "umap", (N, HIST_BINS), "uint8")
    else:
        _shape(part, "qbin", (N, len(schema.SAMPLE_QUANTILES)), "int32")
    for name, shape, dt in (("prio", (N, B, S), "uint64"), ("pos", (N, B, S), "int64"), ("key", (N, B, S), "int32"),
                            ("win", (N, B, S, W), "uint16")):
        _shape(part, name, shape, dt)
    covered = min(int(chunk_stop) * int(chunk_tokens), int(n_tokens))
    if ((part.pos < -1) | (part.pos >= covered)).any():
        raise DamagedState("its samples hold positions outside the chunks covered")


__all__ = ["DamagedState", "check_state", "read_checked_part"]
