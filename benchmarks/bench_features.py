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
``cost``: `features index` of one dictionary against `index --force` of its source hook (same tokens).
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

    from solu_core.dictionary import TopKSAE

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
    from solu_core.dictionary import DictionaryConfig, index_features, train_dictionary
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
            s = {**dictionary_summary(path, r.feature_hook), "act_fn": st.act_fn, "store": str(path),
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
    """`features index` against `index --force` of its source hook, on a copy of the store."""
    from solu_core.dictionary import DictionaryConfig, index_features, train_dictionary
    from store.format.reader import Store
    from store.index import index_store

    work = Path(args.workdir) / "cost"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.store, work, ignore=shutil.ignore_patterns("dictionaries"))
    st = Store.open(work)
    hook = st.recorded_hooks[0]
    r = train_dictionary(work, hook, width=8, k=32, progress=False, config=DictionaryConfig(epochs=0.25))
    t0 = time.perf_counter()
    index_store(work, hooks=[hook], force=True, progress=False)
    t1 = time.perf_counter()
    index_features(work, r.feature_hook, progress=False)
    t2 = time.perf_counter()
    res = {"hook": hook, "tokens": st.n_tokens, "neurons": st.d_mlp, "features": st.n_units(r.feature_hook),
           "neuron_index_s": t1 - t0, "feature_index_s": t2 - t1, "ratio": (t2 - t1) / (t1 - t0), "load": load()}
    print(f"index {st.n_tokens:,} tokens: {hook} ({st.d_mlp} neurons) {t1 - t0:.1f} s, its 8x dictionary "
          f"({res['features']} features, computed from the neurons chunk by chunk, + logit effects + neuron peak) "
          f"{t2 - t1:.1f} s ({res['ratio']:.1f}x) (load {load()})")
    shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train", help="comma-separated: train, demo, cost")
    ap.add_argument("--store", default=None, help="a store whose first hook gives the rows (train, cost)")
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
