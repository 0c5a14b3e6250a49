"""A long recording the way a researcher runs it: `neurobrowse record --index --dense none` over real text.

    .venv/bin/python benchmarks/bench_record_scale.py --model artifacts/demo/models/gelu --tokens 10M
    .venv/bin/python benchmarks/bench_record_scale.py --model CHECKPOINT --tokens 1M --text DIR [DIR ...]

Runs the CLI exactly as docs/cli.md shows it (a fresh process, the progress bar off), over text files
found on this machine (default: the Python standard library's source, tokenized with the model's
tokenizer), into a store without dense activations, and reports:

  wall_s, tok_per_s      the whole command: model, tokens written, index built while recording, index written
  peak_rss_bytes         the command's peak resident memory (ru_maxrss of the child)
  store_bytes            the store on disk (tokens, logit effects, the index of every hook)
  dense_bytes            what the dense activations alone would take (2 B x tokens x neurons recorded)
  ratio                  store_bytes / dense_bytes (issue 12's target: < 1% at 1M tokens or more)
  per_1M_tokens_per_1000_neurons  store_bytes scaled like the issue's figure

and then checks the store reads as a researcher would read it: `neurobrowse info` and `neurobrowse
show` of the first hook's neuron 0 must succeed. Writes benchmarks/out/bench_record_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "neurobrowse", *args], env=env, text=True, capture_output=True, **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "artifacts" / "demo" / "models" / "gelu"),
                    help="a checkpoint directory, Hugging Face folder or TransformerLens name "
                    "(default: the demo's GeLU model)")
    ap.add_argument("--tokens", default="10M", help="tokens to record, e.g. 1M or 10M")
    ap.add_argument("--text", nargs="+", default=[sysconfig.get_paths()["stdlib"]],
                    help="files or folders of text to record (default: the Python standard library)")
    ap.add_argument("--out", default=None, help="store directory (default: a temporary one, deleted after)")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench_record_scale.json"))
    args = ap.parse_args()
    if not Path(args.model).exists() and "/" in args.model:
        raise SystemExit(f"error: no model at {args.model}; run `make demo` first (it trains the demo models) "
                         f"or pass --model CHECKPOINT")
    tmp = Path(tempfile.mkdtemp(prefix="bench_record_scale_"))
    out = Path(args.out) if args.out else tmp / "store"
    shutil.rmtree(out, ignore_errors=True)
    try:
        t = time.perf_counter()
        r = _cli("record", args.model, "--text", *args.text, "--tokens", args.tokens, "--index", "--dense", "none",
                 "--no-fsync", "--quiet", "--out", str(out))
        wall = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(f"record failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        sys.path.insert(0, str(REPO))
        from store.format.reader import Store

        st = Store.open(out)
        n_tokens, hooks, d_mlp = int(st.n_tokens), list(st.hooks), int(st.d_mlp)
        store_bytes = _size(out)
        index_bytes = _size(out / "index")
        dense = 2 * n_tokens * d_mlp * len(hooks)
        info = _cli("info", str(out))
        from store import schema

        show = _cli("show", str(out), "--layer", str(schema.parse_hook_name(hooks[0])[0]), "--hook", hooks[0],
                    "--neuron", "0")
        res = {
            "model": args.model, "text": args.text, "tokens": n_tokens, "hooks": hooks, "d_mlp": d_mlp,
            "wall_s": wall, "tok_per_s": n_tokens / wall, "peak_rss_bytes": peak,
            "store_bytes": store_bytes, "index_bytes": index_bytes, "dense_bytes": dense,
            "ratio": store_bytes / dense,
            "per_1M_tokens_per_1000_neurons": store_bytes / (n_tokens / 1e6) / (d_mlp * len(hooks) / 1e3),
            "info_ok": info.returncode == 0, "show_ok": show.returncode == 0,
            "load_avg_1min": os.getloadavg()[0], "cores": os.cpu_count(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{n_tokens:,} tokens x {len(hooks)} hook(s) x {d_mlp} neurons: {wall:.0f} s "
          f"({res['tok_per_s']:,.0f} tok/s), "
          f"peak memory {peak / 2**30:.2f} GiB, store {store_bytes / 1e6:,.1f} MB (index {index_bytes / 1e6:,.1f} MB) "
          f"= {res['ratio']:.2%} of the dense {dense / 1e9:,.1f} GB; info {'ok' if res['info_ok'] else 'FAILED'}, "
          f"show {'ok' if res['show_ok'] else 'FAILED'} (load {res['load_avg_1min']:.1f})")
    if not (res["info_ok"] and res["show_ok"]):
        print(info.stderr, show.stderr, file=sys.stderr)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
