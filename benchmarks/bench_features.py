"""Dictionaries (issue 19): training throughput and peak memory of the TopK trainer against the same model in
plain torch; the demo pair's dictionary table; feature indexing against the neurons' on the same tokens.

    python benchmarks/bench_features.py --parts train --store artifacts/demo/stores/gelu
    python benchmarks/bench_features.py --parts demo --stores artifacts/demo/stores/gelu artifacts/demo/stores/solu_ln
    python benchmarks/bench_features.py --parts cost --store artifacts/demo/stores/gelu

``train``: 512 -> 4,096 (8x), k = 32, batch 4,096, Adam, on the same rows (the store's hook_post, or
Gaussian rows without --store); each variant runs in its own process (peak RSS = ru_maxrss of that
process), the two alternate, --repeats times; medians. The plain-torch model is what a TopK SAE in
SAELens computes per step: dense [batch, d_sae] pre-activations, a dense zero-and-scatter TopK, a dense
decoder matmul, autograd over all of it.
``demo``: `features train` (8x, k 32) + `features index` on GeLU hook_post, SoLU-LN hook_mid and SoLU-LN
hook_post, then the table (FVU, loss recovered, L0, dead, aligned / spread, explained, hidden).
``cost``: recording and indexing the features of one dictionary against the neurons of its hook, on the same
tokens, alternating, medians (see part_cost).
Writes benchmarks/out/bench_features.json; prints the load average next to each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _rows(store: str | None, n: int, d: int = 512):
    import numpy as np

    if store is None:
        return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    from store.format.reader import Store

    st = Store.open(store)
    hook = st.recorded_hooks[0]
    out, c = [], 0
    while sum(len(x) for x in out) < n and c < st.n_chunks:
        out.append(np.asarray(st.read_chunk(hook, c), np.float32))
        c += 1
    x = np.concatenate(out)[:n]
    return x * np.sqrt(x.shape[1] / (x ** 2).sum(1).mean())


def worker(kind: str, steps: int, store: str | None, threads: int) -> dict:
    """One variant's tokens/s over ``steps`` steps (after 2 warm-up steps) and this process's peak RSS."""
    import torch
    import torch.nn.functional as F

    from solu_core.dictionary.sae import TopKSAE

    torch.set_num_threads(threads)
    B, d, m, k = 4096, 512, 4096, 32
    x_all = torch.from_numpy(_rows(store, B * 4, d))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sae = TopKSAE(d, m, k)
    sae.init_weights(torch.Generator().manual_seed(0), x_all.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=4e-4)
    dead = torch.zeros(m, dtype=torch.bool)

    def ours(x):
        loss, *_ = sae.step_losses(x, dead if dead.any() else None, d // 2, 1 / 32)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()

    def plain(x):  # the dense computation of a plain TopK SAE
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        top = pre.topk(k, dim=1)
        acts = torch.zeros_like(pre).scatter(1, top.indices, F.relu(top.values))
        recon = acts @ sae.W_dec + sae.b_dec
        loss = (recon - x).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()

    step = ours if kind == "ours" else plain
    times = []
    for i in range(steps + 2):
        x = x_all[(i % 4) * B:(i % 4 + 1) * B]
        t = time.perf_counter()
        step(x)
        if i >= 2:
            times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "tokens_per_s": B / statistics.median(times), "step_s": statistics.median(times),
            "peak_rss_mb": rss / 1024, "rss_over_data_mb": (rss - rss0) / 1024, "steps": steps, "threads": threads}


def part_train(args) -> dict:
    runs = {"ours": [], "plain": []}
    for r in range(args.repeats):
        for kind in (("ours", "plain") if r % 2 == 0 else ("plain", "ours")):
            cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            if args.store:
                cmd += ["--store", args.store]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if out.returncode:
                raise SystemExit(out.stderr)
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {kind}: {runs[kind][-1]['tokens_per_s']:,.0f} tokens/s, peak RSS "
                  f"{runs[kind][-1]['peak_rss_mb']:,.0f} MB (load {load()})")
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in runs.items()}
    mem = {k: statistics.median(x["peak_rss_mb"] for x in v) for k, v in runs.items()}
    res = {"runs": runs, "tokens_per_s": med, "peak_rss_mb": mem, "ratio": med["ours"] / med["plain"],
           "load": load()}
    print(f"train 512 -> 4,096 TopK k=32, batch 4,096: ours {med['ours']:,.0f} tokens/s vs plain torch "
          f"{med['plain']:,.0f} ({res['ratio']:.2f}x); peak RSS {mem['ours']:,.0f} vs {mem['plain']:,.0f} MB "
          f"(load {load()})")
    return res


def part_demo(args) -> dict:
    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.index import index_features
    from solu_core.dictionary.train import train_dictionary
    from store.format.features import dictionary_summary, report_rows
    from store.format.reader import Store

    out = []
    for path in args.stores:
        st = Store.open(path)
        for hook in st.recorded_hooks:
            t0 = time.perf_counter()
            r = train_dictionary(path, hook, width=8, k=32, progress=not args.quiet,
                                 config=DictionaryConfig(epochs=args.epochs))
            t1 = time.perf_counter()
            idx = index_features(path, r.feature_hook, progress=not args.quiet)
            t2 = time.perf_counter()
            s = {**dictionary_summary(Store.open(path), r.feature_hook), "act_fn": st.act_fn, "store": str(path),
                 "train_s": t1 - t0 if not r.skipped else None, "index_s": t2 - t1 if idx else None,
                 "load": load()}
            out.append(s)
            print(f"  {st.act_fn} {hook}: trained in {s['train_s'] or 0:.0f} s, indexed in {s['index_s'] or 0:.0f} s "
                  f"(load {load()})")
    rows = report_rows(out)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for s, r in zip([None] + out, rows):
        print(("model    " if s is None else f"{s['act_fn']:<9}") + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return {"dictionaries": out}


def part_cost(args) -> dict:
    """Features against neurons on the same tokens, on a copy of the store (its dictionary, trained for a
    quarter epoch when it has none), the two alternating --repeats times; medians.

    recording: the neurons' activations by the recorded model over the store's tokens (the forward pass of
    `record`, float16, not the write) against the features' (each dense neuron chunk read and encoded, as
    `features index` computes them); indexing: `index --force` of the hook against `features index --force`
    of its dictionary (the same indexer over 8x the units, + logit effects through the decoder + the neuron
    peak)."""
    import numpy as np
    import torch

    from solu_core.dictionary.config import DictionaryConfig
    from solu_core.dictionary.index import index_features
    from solu_core.dictionary.rows import HookRows
    from solu_core.dictionary.train import train_dictionary
    from store import schema
    from store.format.dictionary import list_dictionaries
    from store.format.reader import Store
    from store.index import index_store

    work = Path(args.workdir) / "cost"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.store, work, ignore=shutil.ignore_patterns(".train"))
    st = Store.open(work)
    hook = st.recorded_hooks[-1] if args.hook is None else args.hook
    fh = next((h for h in list_dictionaries(work) if schema.feature_source(h)[0] == hook), None)
    if fh is None:
        fh = train_dictionary(work, hook, width=8, k=32, progress=False,
                              config=DictionaryConfig(epochs=0.25)).feature_hook
    st = Store.open(work)
    d = st.dictionary(fh)
    rows = HookRows(st, hook, model=args.model)
    if rows.loaded is None:
        raise SystemExit(f"the recorded model of {args.store} is not found: pass --model CHECKPOINT")
    rec = rows.loaded.recorder

    def record_neurons() -> None:
        dev = next(rec.parameters()).device
        with torch.no_grad():
            for c in range(st.n_chunks):
                toks = np.asarray(st.read_chunk(schema.TOKENS, c), np.int64).reshape(-1, st.context_len)
                for b in range(0, toks.shape[0], 64):
                    x = torch.from_numpy(toks[b:b + 64]).to(dev)
                    rec.run_with_mlp_cache(x, [hook], dtype=torch.float16)[hook].cpu().numpy()

    def record_features() -> None:
        for c in range(st.n_chunks):
            d.encode(np.asarray(st.read_chunk(hook, c))).astype(np.float16)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    runs = {"record_neurons_s": [], "record_features_s": [], "index_neurons_s": [], "index_features_s": []}
    for r in range(args.repeats):
        pairs = [("record_neurons_s", record_neurons), ("record_features_s", record_features)]
        pairs += [("index_neurons_s", lambda: index_store(work, hooks=[hook], force=True, progress=False)),
                  ("index_features_s", lambda: index_features(work, fh, force=True, progress=False))]
        if r % 2:  # alternate which side goes first
            pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
        for name, fn in pairs:
            runs[name].append(timed(fn))
            print(f"  {name} {runs[name][-1]:.1f} s (load {load()})", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    res = {"hook": hook, "feature_hook": fh, "tokens": st.n_tokens, "neurons": st.d_mlp, "features": d.d_sae,
           "runs": runs, **med, "record_ratio": med["record_features_s"] / med["record_neurons_s"],
           "index_ratio": med["index_features_s"] / med["index_neurons_s"], "load": load()}
    print(f"{st.n_tokens:,} tokens, {hook}: recording {st.d_mlp} neurons {med['record_neurons_s']:.1f} s, "
          f"{d.d_sae} features {med['record_features_s']:.1f} s ({res['record_ratio']:.2f}x); indexing neurons "
          f"{med['index_neurons_s']:.1f} s, features {med['index_features_s']:.1f} s ({res['index_ratio']:.1f}x); "
          f"medians of {args.repeats} (load {load()})")
    shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train", help="comma-separated: train, demo, cost")
    ap.add_argument("--store", default=None, help="a store whose first hook gives the rows (train, cost)")
    ap.add_argument("--hook", default=None, help="the hook (cost; default the store's last recorded hook)")
    ap.add_argument("--model", default=None, help="the recorded model when the manifest does not find it (cost)")
    ap.add_argument("--stores", nargs="+", default=[], help="the demo pair's stores (demo)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / "out"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.store, args.threads)))
        return
    res = {"load_start": load()}
    for part in args.parts.split(","):
        res[part] = {"train": part_train, "demo": part_demo, "cost": part_cost}[part](args)
    out = Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_features.json").write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
