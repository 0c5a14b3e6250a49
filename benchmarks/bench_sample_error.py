"""The error of the quantile-bin samples of `record --index --dense none` against the exact ones.

    .venv/bin/python benchmarks/bench_sample_error.py                       # the demo pair, 262,144 tokens
    .venv/bin/python benchmarks/bench_sample_error.py --workdir artifacts/demo --tokens 262144

Without dense activations the streaming indexer (store.index.stream) draws its samples per *unit* of
histogram bins around the quantile edges of the first chunks of the recording; a neuron whose final
quantile edge is not a unit start gets the samples of the nearest units (counted in the index
attribute ``samples_inexact_neurons``). This measures that approximation on the demo models (trained
on the demo corpus; built with the demo's own steps when ``WORKDIR/models`` is missing):

1. records each model twice over the same text (default: the standard library's source, in file
   order): ``record`` (dense) then ``index`` (the exact samples: pass 2 within the
   final quantile bins), and ``record --index --dense none`` (the streamed samples);
2. per hook: the share of neurons inexact; the share of quantile-bin sample slots that differ (over
   all neurons and over the inexact ones); for the samples of the streamed index that the exact index
   does not hold, the share whose value lies outside their final quantile bin, by how many histogram
   bins (16 per octave) and by how much quantile (the value's quantile from the whole histogram to the
   nearest end of the bin's quantile range);
3. the same measures for *variants* of the unit choice, by folding the dense store's chunks in
   recording order exactly as the streaming indexer does (``--variants``; the first variant is the
   shipped one and must reproduce step 2's figures for the streamed store), so a change of the unit
   choice is measured before and after in one run.

Writes benchmarks/out/bench_sample_error.json (bench_sample_error_TOKENS.json for other --tokens). The
figures do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parent


def _models(workdir: Path, device: str) -> tuple[Path, dict[str, Path]]:
    """The demo corpus and GeLU / SoLU-LN pair under ``workdir`` (built with the demo's steps if missing)."""
    from neurobrowse.demo import ACT_FNS, corpus_config
    from solu_core.corpus.build import build_corpus
    from solu_core.train import train_pair

    corpus, models = workdir / "corpus", workdir / "models"
    if not all((models / a / "config.json").exists() for a in ACT_FNS):
        build_corpus(corpus, corpus_config("demo", True), progress=True)
        train_pair(corpus, models, preset="demo", act_fns=ACT_FNS, device=device, progress=True)
    return corpus, {a: models / a for a in ACT_FNS}


def _bins(keys: np.ndarray) -> np.ndarray:
    """Histogram bin (PartialIndex.hist) of float16 order keys."""
    from store.index.kernels.histogram import HIST_BINS, HIST_OFFSET, HIST_SHIFT

    return np.clip((keys >> HIST_SHIFT) - HIST_OFFSET, 0, HIST_BINS - 1)


def sample_error(exact_pos: np.ndarray, approx_pos: np.ndarray, approx_keys: np.ndarray, qbin: np.ndarray,
                 hist: np.ndarray, n: int, inexact: np.ndarray) -> dict:
    """The error measures of ``approx`` samples against ``exact`` ones, quantile bins only.

    exact_pos / approx_pos int64 [N, B, S] (-1 empty), approx_keys int32 [N, B, S] float16 order keys,
    qbin int32 [N, nq] (sample_thresholds), hist int64 [N, H] of n values, inexact bool [N]."""
    from store.index.kernels.histogram import HIST_BINS
    from store import schema

    N, _, S = exact_pos.shape
    nq = qbin.shape[1]
    nb = nq + 1  # quantile bins (SAMPLE_BINS adds "random", last)
    ex, ap, keys = exact_pos[:, :nb], approx_pos[:, :nb], approx_keys[:, :nb]
    # approx samples the exact bin does not hold, and exact samples the approx bin lacks (slot order
    # aside: the index orders a bin's samples its own way)
    wrong = (ap >= 0) & ~(ap[..., :, None] == ex[..., None, :]).any(-1)
    missing = (ex >= 0) & ~(ex[..., :, None] == ap[..., None, :]).any(-1)
    differ = missing | (wrong & (ex < 0))  # [N, nb, S]: slots of the exact index not shown as they are
    # bin b (SAMPLE_BINS order: highest first) holds histogram bins [lo, hi): b = 0 is [qbin[nq-1], H)
    edges = np.concatenate([qbin, np.full((N, 1), HIST_BINS)], 1)  # [N, nq + 1] ascending
    lo = edges[:, ::-1][:, 1:]  # [N, nb - 1] for b = 0..nq-1; the lowest bin starts at 0
    hi = edges[:, ::-1][:, :-1]
    lo = np.concatenate([lo, np.zeros((N, 1), lo.dtype)], 1)
    hi = np.concatenate([hi, qbin[:, :1]], 1)
    hb = _bins(keys)
    below, above = lo[:, :, None] - hb, hb - (hi[:, :, None] - 1)
    dist = np.maximum(np.maximum(below, above), 0)  # histogram bins outside [lo, hi)
    cum = np.cumsum(hist, 1) / max(n, 1)  # [N, H]
    cdf_mid = (cum - hist / (2 * max(n, 1)))  # the quantile of a bin's middle
    qv = np.take_along_axis(cdf_mid, hb.reshape(N, -1), 1).reshape(hb.shape)
    qs = (0.0,) + tuple(schema.SAMPLE_QUANTILES) + (1.0,)
    q_lo = np.array([qs[nq - b] for b in range(nb)])[None, :, None]
    q_hi = np.array([qs[nq - b + 1] for b in range(nb)])[None, :, None]
    qerr = np.maximum(np.maximum(q_lo - qv, qv - q_hi), 0)
    w_dist, w_q = dist[wrong], qerr[wrong]
    out_bin = w_dist > 0
    return {
        "neurons": int(N),
        "inexact_neurons": int(inexact.sum()),
        "inexact_share": float(inexact.mean()),
        "slots": int(ex.size),
        "slots_differ_share": float(differ.mean()),
        "slots_differ_share_of_inexact": float(differ[inexact].mean()) if inexact.any() else 0.0,
        "neurons_with_a_differing_slot": int(differ.any(axis=(1, 2)).sum()),
        "wrong_samples": int(wrong.sum()),
        "missing_samples": int(missing.sum()),
        "wrong_samples_share_of_samples": float(wrong.sum() / max((ap >= 0).sum(), 1)),
        "wrong_outside_their_bin_share": float(out_bin.mean()) if out_bin.size else 0.0,
        "wrong_hist_bins_outside": {"median": float(np.median(w_dist)) if w_dist.size else 0.0,
                                    "p90": float(np.percentile(w_dist, 90)) if w_dist.size else 0.0,
                                    "max": int(w_dist.max()) if w_dist.size else 0},
        "wrong_quantile_outside": {"median": float(np.median(w_q)) if w_q.size else 0.0,
                                   "p90": float(np.percentile(w_q, 90)) if w_q.size else 0.0,
                                   "max": float(w_q.max()) if w_q.size else 0.0},
        "wrong_by_bin": {schema.SAMPLE_BINS[b]: int(wrong[:, b].sum()) for b in range(nb)},
    }


def _edge_misses(s1, qbin: np.ndarray) -> dict:
    """Per quantile edge: the neurons whose final edge does not start a unit."""
    from store import schema
    from store.index.unit_samples import unit_starts

    starts = unit_starts(s1.umap)
    hit = np.take_along_axis(starts, qbin.astype(np.int64), 1)  # [N, nq]
    return {str(q): int((~hit[:, e]).sum()) for e, q in enumerate(schema.SAMPLE_QUANTILES)}


def _index_samples(st, hook: str) -> tuple[np.ndarray, np.ndarray]:
    from store.index.kernels.f16 import f16_keys_np

    pos = np.asarray(st.index_array(hook, "sample_positions")[...])
    vals = np.asarray(st.index_array(hook, "sample_values")[...]).astype(np.float16)
    return pos, f16_keys_np(vals.view(np.uint16))


def record_both(ck: Path, texts: list[Path], tokens: int, out: Path, device: str) -> dict:
    """Record ``ck`` over ``texts`` dense then index it, and with --index --dense none; returns the
    seconds of each."""
    from solu_core.record import record
    from solu_core.record_config import RecordConfig, text_source
    from store.index import index_store

    secs = {}
    for name, kw in (("dense", {}), ("streamed", {"index": True, "dense": False})):
        path = out / name
        if path.exists():
            shutil.rmtree(path)
        t = time.perf_counter()
        record(ck, path, RecordConfig(text=text_source(texts), n_tokens=tokens, device=device, **kw), progress=False)
        if name == "dense":
            index_store(path, progress=False)
        secs[name] = time.perf_counter() - t
    return secs


def simulate(st, hook: str, p1, qbin: np.ndarray, variant: dict, seed: int) -> tuple[object, np.ndarray, object]:
    """The streamed samples of ``variant`` by folding the dense store's chunks in order as
    store.index.stream does: ``hold`` chunks held back for the units, ``resolve`` "own" (each kept
    sample to the bin of its own value; exact where ``UnitSamples.certified``) or "unit" (the earlier
    rule: a unit's samples to the bin of its first histogram bin; exact where ``exact_for``).
    Returns (SamplePartial, inexact bool [N], UnitSamples)."""
    from store import schema
    from store.index.samples import hist_thresholds
    from store.index.unit_samples import UNIT_RADIUS, UnitSamples, chunk_hist, sample_units, unit_starts
    from store.index.source import ChunkSource

    src = ChunkSource(st, hook)
    hold = min(src.n_chunks, variant["hold"])
    hist, n = 0, 0
    for c in range(hold):
        bits = src.chunk(c)
        hist = hist + chunk_hist(bits)
        n += bits.shape[0]
    umap = sample_units(hist_thresholds(hist, n), variant.get("radius", UNIT_RADIUS))
    if variant.get("split"):
        umap = split_runs(umap, hist)
    s1 = UnitSamples.empty(hook, umap, _window(st, hook))
    for _c, row0, bits in src.chunks(0, src.n_chunks, True):
        s1.update(bits, row0, src.context_len, seed)
    s1.ranges = [(0, src.n_chunks)]
    if variant.get("resolve", "own") == "own":
        got = s1.resolve(qbin)
        return got, ~s1.certified(qbin, p1.hist, got), s1
    N, U, S = s1.prio.shape
    first = np.full((N, U), 1 << 20, np.int64)  # first histogram bin of each unit
    rows, cols = np.nonzero(unit_starts(s1.umap))
    first[rows, s1.umap[rows, cols]] = cols
    ubin = qbin.shape[1] - (first[:, :, None] >= qbin[:, None, :]).sum(axis=2)  # [N, U]
    by_unit = np.repeat(ubin[:, :, None], S, axis=2)
    by_unit[:, -1] = len(schema.SAMPLE_BINS) - 1
    s1._sample_bins = lambda _q: by_unit  # the instance's rule, this variant only
    return s1.resolve(qbin), ~s1.exact_for(qbin), s1


def split_runs(umap: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """A variant of the units (tried, not shipped): while a neuron has units to spare, split its unit
    of most values (provisional histogram ``hist``) that spans several histogram bins at its median,
    so that a unit a final edge falls into holds fewer values (``UnitSamples.certified`` then passes
    more often)."""
    from store.index.unit_samples import N_UNITS, unit_starts

    start = unit_starts(umap)
    H = start.shape[1]
    for i in range(start.shape[0]):
        s, c = start[i], hist[i]
        n_units = int(s.sum())
        while n_units < N_UNITS - 1:
            first = np.flatnonzero(s)
            end = np.append(first[1:], H)
            mass = np.where(end - first > 1, np.add.reduceat(c, first), 0)
            j = int(mass.argmax())
            if mass[j] <= 0:
                break
            cum = np.cumsum(c[first[j]:end[j]])
            k = min(max(int(np.searchsorted(cum, cum[-1] / 2)) + 1, 1), end[j] - first[j] - 1)
            s[first[j] + k] = True
            n_units += 1
    return (np.cumsum(start, axis=1) - 1).astype(np.uint8)


def _window(st, hook: str) -> tuple[int, int]:
    from store.measures.snippets import index_window

    return tuple(index_window(st.index_state(hook)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("artifacts/demo"),
                    help="a demo workdir (corpus/ and models/; built with the demo's steps if missing)")
    ap.add_argument("--tokens", type=int, default=262_144, help="tokens recorded per model (at least ~250k)")
    ap.add_argument("--text", type=Path, nargs="+", default=None,
                    help="text to record (default: this Python's standard library source, part of what the demo "
                    "models were trained on; the demo corpus's held-out split has only ~186k tokens)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scratch", type=Path, default=None, help="where to record (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="use the recordings already in --scratch")
    ap.add_argument("--variants", default="shipped,before,hold32,hold64",
                    help="comma-separated unit choices to simulate: shipped (what record --index does), before (the "
                    "earlier resolve: a unit's samples to the bin of its first histogram bin), hold16 / 32 / 64 "
                    "(shipped with 16 / 32 / 64 chunks held back for the units, at most the recording), r5 / r4 / r3 "
                    "(unit radius) with split (split_runs)")
    args = ap.parse_args()

    import tempfile

    from store import schema
    from store.index import pass1_result, sample_thresholds
    from store.index.stream import provisional_chunks
    from store.format.reader import Store

    import sysconfig

    _corpus, models = _models(args.workdir.expanduser().absolute(), args.device)
    texts = args.text or [Path(sysconfig.get_paths()["stdlib"])]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_sample_error_"))
    result = {"tokens": args.tokens, "text": [str(t) for t in texts], "models": {}}
    for act, ck in models.items():
        out = scratch / act
        out.mkdir(parents=True, exist_ok=True)
        secs = {} if args.reuse and (out / "streamed" / "zarr.json").exists() else \
            record_both(ck, texts, args.tokens, out, args.device)
        dense, streamed = Store.open(out / "dense"), Store.open(out / "streamed")
        ct, n_chunks = int(dense.chunk_tokens), schema.n_chunks(int(dense.n_tokens), int(dense.chunk_tokens))
        hold = provisional_chunks(n_chunks, ct, int(dense.d_mlp))
        per_model = {"record_s": secs, "n_tokens": int(dense.n_tokens), "chunk_tokens": ct, "chunks": n_chunks,
                     "held_chunks": hold, "hooks": {}}
        for hook in dense.hooks:
            p1 = pass1_result(dense, hook)
            qbin = sample_thresholds(p1)
            ex_pos, _ = _index_samples(dense, hook)
            st_pos, st_keys = _index_samples(streamed, hook)
            n_inexact = int(streamed.index_state(hook)["samples_inexact_neurons"])
            seed = int(dense.index_state(hook).get("seed", schema.SAMPLE_SEED))
            variants = {}
            inexact_real = None
            for name in args.variants.split(","):
                v = {"shipped": {"hold": hold}, "before": {"hold": hold, "resolve": "unit"},
                     "hold16": {"hold": 16}, "hold32": {"hold": 32}, "hold64": {"hold": 64},
                     "r5": {"hold": hold, "radius": 5},
                     "r5split": {"hold": hold, "radius": 5, "split": True},
                     "r4split": {"hold": hold, "radius": 4, "split": True},
                     "r3split": {"hold": hold, "radius": 3, "split": True}}[name]
                sp, inexact, s1 = simulate(dense, hook, p1, qbin, v, seed)
                if name == "shipped":
                    inexact_real = inexact
                    assert int(inexact.sum()) == n_inexact, (name, int(inexact.sum()), n_inexact)
                    assert np.array_equal(np.sort(sp.pos, -1), np.sort(st_pos, -1)), \
                        "the simulation does not reproduce the streamed store"
                variants[name] = {**v, **sample_error(ex_pos, sp.pos, sp.key, qbin, p1.hist, p1.n, inexact),
                                  "edges_off_unit_starts": _edge_misses(s1, qbin)}
            real = sample_error(ex_pos, st_pos, st_keys, qbin, p1.hist, p1.n,
                                inexact_real if inexact_real is not None else np.zeros(len(qbin), bool))
            per_model["hooks"][hook] = {"streamed_store": real, "variants": variants}
            print(f"{act} {hook}: inexact {real['inexact_neurons']}/{real['neurons']} neurons "
                  f"({real['inexact_share']:.1%}); slots differing {real['slots_differ_share']:.2%} "
                  f"({real['slots_differ_share_of_inexact']:.1%} of the inexact neurons' slots); wrong samples "
                  f"{real['wrong_samples']} ({real['wrong_samples_share_of_samples']:.2%}), "
                  f"{real['wrong_outside_their_bin_share']:.0%} of them outside their bin by median "
                  f"{real['wrong_hist_bins_outside']['median']:.0f} / max {real['wrong_hist_bins_outside']['max']} "
                  f"histogram bins, quantile error p90 {real['wrong_quantile_outside']['p90']:.4f}")
            for name, v in variants.items():
                print(f"    variant {name:8s} inexact {v['inexact_neurons']:4d}  slots differing "
                      f"{v['slots_differ_share']:.2%}  wrong samples {v['wrong_samples']} "
                      f"({v['wrong_outside_their_bin_share']:.0%} outside their bin, max "
                      f"{v['wrong_hist_bins_outside']['max']} hist bins)  edges off unit starts "
                      f"{v['edges_off_unit_starts']}")
        result["models"][act] = per_model
    out_json = ROOT / "out" / ("bench_sample_error.json" if args.tokens == 262_144 else
                               f"bench_sample_error_{args.tokens}.json")
    out_json.parent.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_json}")
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
