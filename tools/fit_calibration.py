"""Fit the shipped calibration (neurobrowse/resources/calibration.json) from every rated set in docs/studies.

    python tools/fit_calibration.py [--studies docs/studies] [--out neurobrowse/resources/calibration.json]

Deterministic (neurobrowse.calibration.SEED): the same rating sets give the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurobrowse import calibration  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default=str(ROOT / "docs" / "studies"))
    ap.add_argument("--out", default=str(calibration.RESOURCE))
    ap.add_argument("--only", nargs="+", default=None, metavar="SET",
                    help="fit on these set folders of --studies only (default: every rated set there)")
    args = ap.parse_args(argv)
    sets = calibration.rating_sets(args.studies)
    if args.only:
        sets = [s for s in sets if s.name in set(args.only)]
    if not sets:
        print(f"error: no rated sets under {args.studies}", file=sys.stderr)
        return 2
    cal = calibration.fit(sets)
    Path(args.out).write_text(json.dumps(cal.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"calibration from {len(sets)} sets ({cal.n} neurons: {', '.join(cal.sets)}): "
          f"coef {', '.join(f'{x:.3f}' for x in cal.coef)} (intercept, {', '.join(calibration.FEATURES)}) "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
