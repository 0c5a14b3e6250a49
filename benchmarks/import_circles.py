"""Import circles between modules: the strongly connected groups of the import graph of store, solu_core and
neurobrowse (grimp, function-level and TYPE_CHECKING imports included), and the pairs that import each other.

    .venv/bin/python benchmarks/import_circles.py [REPO]      # default: this checkout

Exit status 0 either way; the figure is the count printed first (docs/code-layout.md; RESULTS.md, issue 22).
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

PACKAGES = ("store", "solu_core", "neurobrowse")


def circles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    adj = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules)
           for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        group.append(x)
                        if x == v:
                            break
                    if len(group) > 1:
                        out.append(sorted(group))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                on.add(w)
                work.append((w, iter(adj[w])))
            elif w in on:
                low[v] = min(low[v], index[w])
    return sorted(out)


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
    sys.path.insert(0, str(repo))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    found = circles(graph)
    pairs = sorted({tuple(sorted((a, b))) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                    if b in graph.modules and a in graph.find_modules_directly_imported_by(b)})
    print(f"{len(found)} import circles between modules ({len(graph.modules)} modules); "
          f"{len(pairs)} pairs import each other")
    for group in found:
        print("  circle: " + " <-> ".join(group))
    for a, b in pairs:
        print(f"  pair: {a} <-> {b}")


if __name__ == "__main__":
    main()
