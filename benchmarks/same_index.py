"""Are two stores' indexes the same? Every array under ``index/{hook}`` (the index arrays, the
explanations and, with ``--state``, the kept resume state) is compared by dtype, shape and value
(NaN equal to NaN), and the group attributes but the run's own (uuids, times).

    .venv/bin/python benchmarks/same_index.py STORE_A STORE_B [--state]

Used to show that a change to the indexer or the rule search leaves what it writes unchanged:
index one copy of a store with main, another with the branch, and compare. Exits 1 on any
difference (each one printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import warnings

import numpy as np
import zarr
from zarr.storage import LocalStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", message="Object at .lock-")  # the hooks' lock files beside the groups
RUN_OWN = ("run_uuid", "run_uuid_indexing", "indexed_at", "created", "seal")  # attributes of the run, not the index


def arrays(group: zarr.Group, prefix: str = "", state: bool = False) -> dict[str, zarr.Array]:
    out = {}
    for name, node in group.members():
        if name == "_state" and not state:
            continue
        if isinstance(node, zarr.Group):
            out.update(arrays(node, f"{prefix}{name}/", state))
        else:
            out[f"{prefix}{name}"] = node
    return out


def attrs_of(group: zarr.Group) -> dict:
    return {k: v for k, v in dict(group.attrs).items() if not any(k.startswith(r) for r in RUN_OWN)}


def compare(a_path: str, b_path: str, state: bool = False) -> list[str]:
    ga = zarr.open_group(LocalStore(a_path, read_only=True), mode="r", path="index")
    gb = zarr.open_group(LocalStore(b_path, read_only=True), mode="r", path="index")
    diffs = []
    hooks_a = sorted(n for n, g in ga.members() if isinstance(g, zarr.Group) and n != "_rebuild")
    hooks_b = sorted(n for n, g in gb.members() if isinstance(g, zarr.Group) and n != "_rebuild")
    if hooks_a != hooks_b:
        return [f"hooks differ: {hooks_a} vs {hooks_b}"]
    n = 0
    for hook in hooks_a:
        ha, hb = ga[hook], gb[hook]
        aa, ab = attrs_of(ha), attrs_of(hb)
        for k in sorted(set(aa) | set(ab)):
            if k == "progress" and not state:
                continue
            if aa.get(k) != ab.get(k):
                diffs.append(f"{hook} attribute {k}: {aa.get(k)!r} vs {ab.get(k)!r}")
        xa, xb = arrays(ha, state=state), arrays(hb, state=state)
        if sorted(xa) != sorted(xb):
            diffs.append(f"{hook}: arrays {sorted(set(xa) ^ set(xb))} are in one store only")
        for name in sorted(set(xa) & set(xb)):
            u, v = xa[name][...], xb[name][...]
            n += 1
            if u.dtype != v.dtype or u.shape != v.shape:
                diffs.append(f"{hook}/{name}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}")
            elif not np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"):
                diffs.append(f"{hook}/{name}: {int(np.sum(u != v))} of {u.size} values differ")
    print(f"{len(hooks_a)} hooks, {n} arrays compared: {len(diffs)} differences")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--state", action="store_true", help="compare the kept resume state (index/{hook}/_state) too")
    args = ap.parse_args()
    diffs = compare(args.a, args.b, args.state)
    for d in diffs:
        print(d)
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
