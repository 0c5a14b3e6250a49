"""Why the proxy's verdict words miss on some held-out sets (issue 20): each set held out in turn, the
calibration fitted on the others only, nothing read from the held-out set's ratings except to score.

    python benchmarks/verdict_gap.py [--boot 100]

Per held-out set (hook_post neuron items of the trained models):
  bias      mean calibrated probability minus the study's share, GeLU and SoLU-LN apart (where the
            proxy's difference is lost)
  width     the 95% interval of the proxy's difference with (a) the calibration's error alone (the
            items fixed, expected shares), (b) + resampling the items, (c) + a Bernoulli verdict per item
            (what validate_verdict.py and `compare` use)
  family    the difference from two calibrations, one fitted on the other sets' GeLU items and one on their
            SoLU-LN items (the calibration per model family)
  level     the interval level chosen by nested leave-one-set-out on the other sets only (the level among
            95/90/80% whose words agree with the most other sets, ties to the widest), then applied to the
            held-out set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurobrowse import calibration as cal_mod  # noqa: E402
from neurobrowse.verdict import newcombe, word_for  # noqa: E402

LEVELS = (95, 90, 80)


def _draws(X, cal, rng, draws, resample: bool, bernoulli: bool) -> np.ndarray:
    n = len(X)
    out = np.empty(draws)
    for d in range(draws):
        coef = cal.draws[d % len(cal.draws)]
        i = rng.integers(0, n, n) if resample else np.arange(n)
        p = cal_mod.predict(X[i], coef)
        out[d] = (rng.random(n) < p).mean() if bernoulli else p.mean()
    return out


def diff_interval(held, cal, level=95, resample=True, bernoulli=True, draws=2000):
    s, o = held.group("solu_ln"), held.group("gelu")
    rng = np.random.default_rng(cal_mod.SEED)
    a = _draws(held.X[s], cal, rng, draws, resample, bernoulli)
    b = _draws(held.X[o], cal, rng, draws, resample, bernoulli)
    q = (100 - level) / 2
    return float(np.percentile(a - b, q)), float(np.percentile(a - b, 100 - q))


def study(held):
    s, o = held.group("solu_ln"), held.group("gelu")
    ks, ns, ko, no = int(held.y[s].sum()), int(s.sum()), int(held.y[o].sum()), int(o.sum())
    lo, hi = newcombe(ks, ns, ko, no)
    return ks / ns - ko / no, word_for(lo, hi)


def family_fit(train, n_boot):
    """Two calibrations: one from the other sets' GeLU-family items, one from their SoLU-family items."""
    out = {}
    for fam in ("gelu", "solu_ln"):
        parts = []
        for t in train:
            t = t.neurons()
            parts.append(t.subset(t.act_fn == fam) if fam == "gelu" else t.subset(t.act_fn != "gelu"))
        out[fam] = cal_mod.fit([p for p in parts if len(p.y)], n_boot=n_boot)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default=str(ROOT / "docs" / "studies"))
    ap.add_argument("--boot", type=int, default=100)
    args = ap.parse_args(argv)
    sets = [s.neurons() for s in cal_mod.rating_sets(args.studies)]
    cals = {}

    def cal_without(names):
        key = tuple(sorted(names))
        if key not in cals:
            cals[key] = cal_mod.fit([s for s in sets if s.name not in key], n_boot=args.boot)
        return cals[key]

    print("| held-out set | study | proxy | bias GeLU / SoLU-LN (pts) | 95% width: calibration / + items / "
          "+ verdicts | per-family calibration | level chosen on the others: words / study |")
    print("|---|---|---|---|---|---|---|")
    for held in sets:
        cal = cal_without([held.name])
        s, o = held.group("solu_ln"), held.group("gelu")
        ps, po = cal.p(held.X[s]), cal.p(held.X[o])
        st_diff, st_word = study(held)
        widths = []
        for res, ber in ((False, False), (True, False), (True, True)):
            lo, hi = diff_interval(held, cal, 95, res, ber)
            widths.append(f"[{100 * lo:+.0f}, {100 * hi:+.0f}]")
        fam = family_fit([t for t in sets if t.name != held.name], args.boot)
        fam_diff = fam["solu_ln"].p(held.X[s]).mean() - fam["gelu"].p(held.X[o]).mean()
        # nested: choose the level on the other sets (each scored by a calibration fitted without it and H)
        score = {}
        for lv in LEVELS:
            score[lv] = sum(word_for(*diff_interval(t, cal_without([held.name, t.name]), lv, draws=1000))
                            == study(t)[1] for t in sets if t.name != held.name)
        best = max(LEVELS, key=lambda lv: (score[lv], lv))
        word = word_for(*diff_interval(held, cal, best))
        print(f"| `{held.name}` | {100 * st_diff:+.0f} {st_word} | {100 * (ps.mean() - po.mean()):+.0f} | "
              f"{100 * (po.mean() - held.y[o].mean()):+.0f} / {100 * (ps.mean() - held.y[s].mean()):+.0f} | "
              f"{' / '.join(widths)} | {100 * fam_diff:+.0f} | {best}% "
              f"({', '.join(f'{lv}%: {score[lv]}/{len(sets) - 1}' for lv in LEVELS)}): {word} / {st_word} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
