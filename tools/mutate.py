"""Mutation testing with mutmut: how many small, realistic bugs in the named modules the tests catch.

    .venv/bin/python tools/mutate.py                                   # store/ and neurobrowse/study/
    .venv/bin/python tools/mutate.py --paths store/format/chunkio.py --tests tests/test_store_writer.py

Copies the source tree into --work (default build/mutation; the checkout is never touched), writes
mutmut's settings there ([tool.mutmut] in the copy's pyproject.toml: the modules to mutate, the tests
to run), runs ``mutmut run`` and prints the kill rate: mutants killed (or timed out) over mutants
tested, where a mutant no selected test reaches counts as a survivor. Writes the counts to
benchmarks/out/mutation.json. Needs the ``mutation`` extra (pip install -e ".[mutation]").

mutmut runs the tests that cover each mutated function, one pytest run per mutant: tests that build
the tiny trained models (tests/builders.py) rebuild them per run, so restrict --tests to quick test
modules for large --paths on a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", nargs="+", default=["store/", "neurobrowse/study/"], help="modules to mutate")
    ap.add_argument("--tests", nargs="+", default=["tests/"], help="test files or folders to run")
    ap.add_argument("-k", dest="keyword", default=None, help="pytest -k expression to narrow the tests")
    ap.add_argument("--work", default=str(ROOT / "build" / "mutation"), help="scratch copy of the tree")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested at once")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "mutation.json"))
    args = ap.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print('error: mutmut is not installed; pip install -e ".[mutation]"', file=sys.stderr)
        return 2
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".git", ".venv", "build", "mutants", "dist",
                                                              "artifacts", "__pycache__", "*.egg-info"))
    selection = list(args.tests) + (["-k", args.keyword] if args.keyword else [])
    settings = {"source_paths": args.paths,
                "also_copy": ["solu_core/", "store/", "neurobrowse/", "tests/", "benchmarks/"],
                "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-x"],
                "pytest_add_cli_args_test_selection": selection}
    toml = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    with open(work / "pyproject.toml", "a") as f:
        f.write(toml)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(work)}
    mutmut = [sys.executable, "-m", "mutmut"]
    t0 = time.perf_counter()
    run = subprocess.run(mutmut + ["run", "--max-children", str(args.max_children)], cwd=work, env=env)
    seconds = time.perf_counter() - t0
    subprocess.run(mutmut + ["export-cicd-stats"], cwd=work, env=env, check=False)
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    if not stats_file.exists():
        print(f"error: mutmut wrote no statistics (exit {run.returncode}); see {work}", file=sys.stderr)
        return 2
    stats = json.loads(stats_file.read_text())
    killed = stats.get("killed", 0) + stats.get("timeout", 0) + stats.get("segfault", 0)
    total = killed + sum(stats.get(k, 0) for k in ("survived", "no_tests", "suspicious"))
    if not total:
        print(f"error: no mutant was tested (exit {run.returncode}); see the output above and {work}", file=sys.stderr)
        return 2
    rate = killed / total
    survivors = subprocess.run(mutmut + ["results"], cwd=work, env=env, capture_output=True, text=True).stdout
    out = {"paths": args.paths, "tests": selection, "stats": stats, "kill_rate": rate, "seconds": seconds,
           "survivors": [s for s in re.findall(r"^\s*(\S+): survived", survivors, re.M)]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"mutation kill rate {rate:.1%} ({killed} of {total} mutants killed) over {', '.join(args.paths)} "
          f"in {seconds / 60:.1f} min; survivors: {len(out['survivors'])} (mutmut results in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
