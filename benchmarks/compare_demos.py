"""Are two `neurobrowse demo` workdirs the same? (issue 20: a reproducible demo)

    .venv/bin/python benchmarks/compare_demos.py artifacts/demo OTHER_DEMO [--json benchmarks/out/compare_demos.json]

Compares what a rating set depends on, decoded, not file bytes (Zarr chunk files carry a checksum codec and
attributes carry run UUIDs, timestamps and the workdir's own path):

  models       sha256 of every checkpoint's model.safetensors (the weights, byte for byte), and config.json
               with its wall-clock fields (tokens_per_s, wall_s, ...) and the workdir's path set aside
  corpus       the tokenized splits (.npy arrays decoded), documents.jsonl and tokenizer.json by sha256
  stores       every Zarr array of every store under stores/, chunk by chunk: the recorded activations
               (blocks.*), tokens / doc_starts / tokenizer_json, the index arrays (index/<hook>/...), the
               index's resumable state (index/<hook>/_state), logit effects (logit/...), the done markers;
               dictionaries (safetensors tensors and .npy decoded). Attributes are compared with run UUIDs,
               timestamps, durations and the workdir's path set aside, and listed where they differ.

Exit status 0 when every array is equal, 1 when any differs (the table says which), 2 on bad input.
Reads only; never writes into either workdir.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from solu_core.checkpoint import sha256_file

# Attribute keys that are a run's identity or its clock, never its content.
_VOLATILE = re.compile(
    r"(uuid|created|modified|timestamp|_at$|^at$|time|wall|elapsed|seconds|_s$|per_s|duration|date|host|pid)",
    re.IGNORECASE,
)


def normalise(value, root: str):
    """Attributes with the volatile keys dropped and the workdir's own path replaced by WORKDIR."""
    if isinstance(value, dict):
        return {k: normalise(v, root) for k, v in value.items() if not _VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "WORKDIR")
    return value


def attr_diff(a, b, prefix: str = "") -> list[str]:
    """The keys (dotted) where two normalised attribute trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{prefix}{k} (only in {'B' if k not in a else 'A'})")
            else:
                out.extend(attr_diff(a[k], b[k], f"{prefix}{k}."))
        return out
    return [] if a == b else [prefix.rstrip(".") or "(value)"]


def compare_arrays(x, y) -> dict:
    """Decoded equality of two array-likes (Zarr arrays or numpy), block by block along the first axis."""
    if tuple(x.shape) != tuple(y.shape) or np.dtype(x.dtype) != np.dtype(y.dtype):
        return {"equal": False, "why": f"shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}"}
    if len(x.shape) == 0:
        xa, ya = np.asarray(x[()]), np.asarray(y[()])
        eq = bool(np.array_equal(xa, ya, equal_nan=xa.dtype.kind in "fc"))
        return {"equal": eq, "n_diff": 0 if eq else 1, "n": 1}
    chunks = getattr(x, "chunks", None)
    chunk = int(chunks[0]) if chunks else 1
    row = int(np.prod(x.shape[1:], dtype=np.int64)) or 1
    step = chunk * max(1, (1 << 24) // (row * chunk))  # whole chunks, about 16M elements at a time
    n_diff = 0
    max_abs = 0.0
    for lo in range(0, x.shape[0], step):
        xa = np.asarray(x[lo : lo + step])
        ya = np.asarray(y[lo : lo + step])
        if xa.dtype.kind in "fc":
            same = (xa == ya) | (np.isnan(xa) & np.isnan(ya))
        else:
            same = xa == ya
        bad = int(np.size(same) - np.count_nonzero(same))
        if bad:
            n_diff += bad
            if xa.dtype.kind in "fciu":
                d = np.abs(xa.astype(np.float64) - ya.astype(np.float64))
                max_abs = max(max_abs, float(np.nanmax(np.where(same, 0, d))))
    out = {"equal": n_diff == 0, "n_diff": n_diff, "n": int(np.prod(x.shape, dtype=np.int64))}
    if n_diff:
        out["max_abs_diff"] = max_abs
    return out


def category(path: str) -> str:
    """What an array is, with its unit (a hook, or a dictionary over a hook) where it has one."""
    parts = path.split("/")
    first = parts[0]
    if first.startswith("blocks."):
        return "activations"
    if first in ("tokens", "doc_starts", "tokenizer_json"):
        return "tokens"
    unit = f" `{parts[1]}`" if len(parts) > 2 else ""
    if first == "index":
        return ("index state" if "/_state/" in path else "index") + unit
    return {"logit": "logit effects", "done": "done markers"}.get(first, first) + unit


def zarr_arrays(root: Path) -> dict[str, object]:
    import warnings

    import zarr

    group = zarr.open_group(str(root), mode="r")
    out: dict[str, object] = {"": group}
    with warnings.catch_warnings():  # the index's .lock-<hook> files are not Zarr nodes
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        for name, node in group.members(max_depth=None):
            out[name] = node
    return out


def compare_store(a: Path, b: Path, roots: tuple[str, str]) -> dict:
    import zarr

    na, nb = zarr_arrays(a), zarr_arrays(b)
    rows: dict[str, dict] = {}
    diffs: list[dict] = []
    attr_diffs: list[str] = []
    for name in sorted(set(na) | set(nb)):
        cat = category(name) if name else "store"
        row = rows.setdefault(cat, {"arrays": 0, "equal": 0, "elements": 0})
        if name not in na or name not in nb:
            diffs.append({"array": name, "why": f"only in {'A' if name in na else 'B'}"})
            continue
        x, y = na[name], nb[name]
        keys = attr_diff(normalise(dict(x.attrs), roots[0]), normalise(dict(y.attrs), roots[1]))
        attr_diffs.extend(f"{name or '/'}: {k}" for k in keys)
        if not isinstance(x, zarr.Array):
            continue
        r = compare_arrays(x, y)
        row["arrays"] += 1
        row["elements"] += r.get("n", 0)
        if r["equal"]:
            row["equal"] += 1
        else:
            diffs.append({"array": name, **r})
    rows.pop("store", None)
    dicts = compare_dictionaries(a / "dictionaries", b / "dictionaries", roots)
    if dicts is not None:
        rows.update(dicts["rows"])
        diffs.extend(dicts["diffs"])
        attr_diffs.extend(dicts["attr_diffs"])
    return {"categories": rows, "diffs": diffs, "attr_diffs": attr_diffs}


def compare_dictionaries(a: Path, b: Path, roots: tuple[str, str]) -> dict | None:
    if not a.is_dir() and not b.is_dir():
        return None
    from safetensors.numpy import load_file

    rows: dict[str, dict] = {}
    diffs: list[dict] = []
    attr_diffs: list[str] = []
    fa = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()} if a.is_dir() else set()
    fb = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
    for rel in sorted(fa | fb):
        if rel not in fa or rel not in fb:
            diffs.append({"array": f"dictionaries/{rel}", "why": f"only in {'A' if rel in fa else 'B'}"})
            continue
        unit = rel.split("/", 1)[0]
        row = rows.setdefault(f"dictionary `{unit}`", {"arrays": 0, "equal": 0, "elements": 0})
        pa, pb = a / rel, b / rel
        if rel.endswith(".safetensors"):
            ta, tb = load_file(str(pa)), load_file(str(pb))
            for key in sorted(set(ta) | set(tb)):
                row["arrays"] += 1
                if key not in ta or key not in tb:
                    diffs.append({"array": f"dictionaries/{rel}:{key}", "why": "only in one"})
                    continue
                r = compare_arrays(ta[key], tb[key])
                row["elements"] += r.get("n", 0)
                row["equal"] += r["equal"]
                if not r["equal"]:
                    diffs.append({"array": f"dictionaries/{rel}:{key}", **r})
        elif rel.endswith(".npy"):
            row["arrays"] += 1
            r = compare_arrays(np.load(pa), np.load(pb))
            row["elements"] += r.get("n", 0)
            row["equal"] += r["equal"]
            if not r["equal"]:
                diffs.append({"array": f"dictionaries/{rel}", **r})
        elif rel.endswith(".json"):
            ja, jb = json.loads(pa.read_text()), json.loads(pb.read_text())
            keys = attr_diff(normalise(ja, roots[0]), normalise(jb, roots[1]))
            attr_diffs.extend(f"dictionaries/{rel}: {k}" for k in keys)
    return {"rows": rows, "diffs": diffs, "attr_diffs": attr_diffs}


def compare_models(a: Path, b: Path, roots: tuple[str, str]) -> list[dict]:
    out = []
    names = sorted({p.name for p in a.iterdir() if p.is_dir()} | {p.name for p in b.iterdir() if p.is_dir()})
    for name in names:
        ma, mb = a / name / "model.safetensors", b / name / "model.safetensors"
        ha = sha256_file(ma) if ma.is_file() else None
        hb = sha256_file(mb) if mb.is_file() else None
        cfg = []
        ca, cb = a / name / "config.json", b / name / "config.json"
        if ca.is_file() and cb.is_file():
            cfg = attr_diff(normalise(json.loads(ca.read_text()), roots[0]),
                            normalise(json.loads(cb.read_text()), roots[1]))
        out.append({"model": name, "sha256_a": ha, "sha256_b": hb, "equal": ha is not None and ha == hb,
                    "config_diffs": cfg})
    return out


def compare_corpus(a: Path, b: Path) -> list[dict]:
    out = []
    fa = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    for rel in sorted(fa | fb):
        if rel not in fa or rel not in fb:
            out.append({"file": rel, "equal": False, "why": f"only in {'A' if rel in fa else 'B'}"})
        elif rel.endswith(".npy"):
            r = compare_arrays(np.load(a / rel, mmap_mode="r"), np.load(b / rel, mmap_mode="r"))
            out.append({"file": rel, **r})
        elif rel == "manifest.json":
            ja, jb = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
            keys = attr_diff(normalise(ja, str(a.parent)), normalise(jb, str(b.parent)))
            out.append({"file": rel, "equal": not keys, "diffs": keys})
        else:
            out.append({"file": rel, "equal": sha256_file(a / rel) == sha256_file(b / rel)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="a demo workdir (with models/, corpus/, stores/)")
    ap.add_argument("b", type=Path, help="another demo workdir")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "out" / "compare_demos.json")
    ap.add_argument("--stores", nargs="*", help="only these stores (default: every store in either workdir)")
    ap.add_argument("--show", type=int, default=8, help="how many differing arrays to list per store")
    args = ap.parse_args(argv)
    for w in (args.a, args.b):
        if not (w / "stores").is_dir():
            print(f"error: {w} is not a demo workdir (no stores/ in it); pass the WORKDIR of "
                  "`neurobrowse demo --workdir WORKDIR`", file=sys.stderr)
            return 2
    roots = (str(args.a.resolve()), str(args.b.resolve()))
    t0 = time.perf_counter()
    report: dict = {"a": roots[0], "b": roots[1]}
    if (args.a / "models").is_dir() and (args.b / "models").is_dir():
        report["models"] = compare_models(args.a / "models", args.b / "models", roots)
    if (args.a / "corpus").is_dir() and (args.b / "corpus").is_dir():
        report["corpus"] = compare_corpus(args.a / "corpus", args.b / "corpus")
    names = args.stores or sorted({p.name for w in (args.a, args.b) for p in (w / "stores").iterdir() if p.is_dir()})
    report["stores"] = {}
    for name in names:
        sa, sb = args.a / "stores" / name, args.b / "stores" / name
        if not (sa.is_dir() and sb.is_dir()):
            report["stores"][name] = {"missing": "A" if not sa.is_dir() else "B"}
            continue
        print(f"comparing stores/{name} ...", file=sys.stderr, flush=True)
        report["stores"][name] = compare_store(sa, sb, roots)
    report["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"A = {roots[0]}\nB = {roots[1]}\n")
    all_equal = True
    if "models" in report:
        print("| checkpoint | model.safetensors sha256 (A) | (B) | equal | config.json differs in |")
        print("|---|---|---|---|---|")
        for m in report["models"]:
            all_equal &= m["equal"]
            print(f"| `{m['model']}` | `{m['sha256_a']}` | `{m['sha256_b']}` | {'yes' if m['equal'] else 'NO'} "
                  f"| {', '.join(m['config_diffs']) or '-'} |")
        print()
    if "corpus" in report:
        bad = [c["file"] for c in report["corpus"] if not c["equal"]]
        all_equal &= not bad
        print(f"corpus: {len(report['corpus'])} files, {'all equal' if not bad else 'differ: ' + ', '.join(bad)}\n")
    print("| store | what | arrays | equal | elements |")
    print("|---|---|---|---|---|")
    for name, r in report["stores"].items():
        if "missing" in r:
            all_equal = False
            print(f"| `{name}` | missing in {r['missing']} | | | |")
            continue
        for cat, row in sorted(r["categories"].items()):
            if not row["arrays"]:
                continue
            all_equal &= row["equal"] == row["arrays"]
            print(f"| `{name}` | {cat} | {row['arrays']} | {row['equal']} | {row['elements']:,} |")
    for name, r in report["stores"].items():
        for d in r.get("diffs", [])[: args.show]:
            all_equal = False
            extra = d.get("why") or (f"{d['n_diff']:,} of {d['n']:,} elements differ, "
                                     f"max |diff| {d.get('max_abs_diff', 0):.4g}")
            print(f"  differs: {name}/{d['array']}: {extra}")
        if len(r.get("diffs", [])) > args.show:
            all_equal = False
            print(f"  ... and {len(r['diffs']) - args.show} more arrays of {name} differ (all in --json)")
        keys: dict[str, int] = {}
        for k in r.get("attr_diffs", []):
            key = k.split(": ", 1)[1]
            keys[key] = keys.get(key, 0) + 1
        if keys:
            print(f"  attributes of {name} that differ (content, not a run id or a clock): "
                  + ", ".join(f"{k} ({n} nodes)" for k, n in sorted(keys.items())))
    differing = sorted({f"{name}: {cat}" for name, r in report["stores"].items()
                        for cat, row in r.get("categories", {}).items() if row["equal"] != row["arrays"]})
    report["differing"] = differing
    if differing:
        print("\nwhat differs: " + "; ".join(differing))
    print(f"\n{'identical' if all_equal else 'NOT identical'} ({report['seconds']} s)")
    report["identical"] = all_equal
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
