"""From rule scores to the probability that a blinded rater calls a neuron interpretable, and from
there to a per-model share with an interval that includes the calibration's own error.

**The model.** A logistic regression of the raters' majority verdict (interpretable = 1; not,
unsure or tied = 0, as the study's shares count them) on ``FEATURES``: the best rule's score,
coverage and whether it is a token set, the share of the other snippet tokens a study shades, the log
kurtosis of the snippet activations and the share of the other snippet tokens active at all
(store.measures.rules: all read off the same 20 distinct snippets a study shows), fitted on the
pooled rating sets of docs/studies (``load_rating_set``). Its uncertainty is a two-stage bootstrap:
resample the rating sets, then the neurons within each, refit; ``BOOTSTRAP`` coefficient draws ship
with the point fit in ``neurobrowse/resources/calibration.json``, written by
``tools/fit_calibration.py`` (deterministic: a fixed seed).

**A share.** For a model's neurons with probabilities p_i: the expected share mean(p). Its 95%
interval comes from ``DRAWS`` joint draws of (a bootstrap coefficient draw, a resample of the
neurons, a Bernoulli draw of each neuron's verdict): calibration error, sampling and the rater's
coin all count. A difference of two models uses the same coefficient draw on both sides.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = ("rule_score", "rule_coverage", "shaded_other", "rule_is_set", "log_kurtosis", "positive_other")
RIDGE = 1e-3  # L2 penalty on the slopes (not the intercept), times the neurons
BOOTSTRAP = 400  # coefficient draws kept in the calibration file
DRAWS = 2000  # joint draws behind a share's interval
SEED = 20  # fixed: the fit and every interval are reproducible
RESOURCE = Path(__file__).resolve().parent / "resources" / "calibration.json"


# ---- fitting ------------------------------------------------------------------------------------------
def features(arrays: dict) -> np.ndarray:
    """float64 [N, len(FEATURES)] from store.measures.rules.rule_arrays output (NaN -> 0: no rule)."""
    return np.stack([np.nan_to_num(np.asarray(arrays[f], np.float64), nan=0.0) for f in FEATURES], 1)


def fit_logistic(X: np.ndarray, y: np.ndarray, ridge: float = RIDGE, iters: int = 50) -> np.ndarray:
    """Coefficients [1 + d] (intercept first) of a ridge-penalised logistic regression, by Newton's method."""
    A = np.hstack([np.ones((len(X), 1)), np.asarray(X, np.float64)])
    y = np.asarray(y, np.float64)
    w = np.zeros(A.shape[1])
    pen = np.full(A.shape[1], ridge * max(len(X), 1))
    pen[0] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(A @ w, -30, 30)))
        g = A.T @ (p - y) + pen * w
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(pen + 1e-9)
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def predict(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """float64 [N] (or [B, N] for coef [B, 1 + d]) probabilities."""
    X = np.asarray(X, np.float64)
    coef = np.asarray(coef, np.float64)
    z = coef[..., :1] + (coef[..., None, 1:] * X).sum(-1) if coef.ndim == 2 else coef[0] + X @ coef[1:]
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


@dataclass
class Calibration:
    coef: np.ndarray  # [1 + d]
    draws: np.ndarray  # [B, 1 + d] bootstrap refits
    sets: list[str]  # the rating sets it was fitted on
    n: int  # neurons
    features: tuple[str, ...] = FEATURES

    def p(self, X: np.ndarray) -> np.ndarray:
        return predict(X, self.coef)

    def to_json(self) -> dict:
        return {"kind": "neurobrowse-calibration", "version": 1, "features": list(self.features),
                "model": "logistic regression of the majority verdict 'interpretable'", "ridge": RIDGE,
                "seed": SEED, "sets": self.sets, "n_neurons": self.n,
                "coef": [round(float(x), 6) for x in self.coef],
                "draws": [[round(float(x), 5) for x in row] for row in self.draws]}

    @classmethod
    def from_json(cls, doc: dict) -> "Calibration":
        return cls(np.asarray(doc["coef"], np.float64), np.asarray(doc["draws"], np.float64), list(doc["sets"]),
                   int(doc["n_neurons"]), tuple(doc["features"]))


def fit(sets: list["RatingSet"], n_boot: int = BOOTSTRAP, seed: int = SEED) -> Calibration:
    """The calibration from rating sets: the point fit on all their neurons and ``n_boot`` two-stage
    bootstrap refits (sets with replacement, then neurons within each set)."""
    sets = [s.neurons() for s in sets]  # a dictionary's feature items are rated too, but this calibrates neurons
    X = np.vstack([s.X for s in sets])
    y = np.concatenate([s.y for s in sets])
    coef = fit_logistic(X, y)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(sets), len(sets)) if len(sets) > 1 else [0]
        Xb, yb = [], []
        for j in pick:
            i = rng.integers(0, len(sets[j].y), len(sets[j].y))
            Xb.append(sets[j].X[i])
            yb.append(sets[j].y[i])
        draws.append(fit_logistic(np.vstack(Xb), np.concatenate(yb)))
    return Calibration(coef, np.array(draws), [s.name for s in sets], int(len(y)))


_LOADED: Calibration | None = None


def shipped() -> Calibration:
    """The calibration in the package (tools/fit_calibration.py wrote it from docs/studies)."""
    global _LOADED
    if _LOADED is None:
        _LOADED = Calibration.from_json(json.loads(RESOURCE.read_text(encoding="utf-8")))
    return _LOADED


# ---- shares -----------------------------------------------------------------------------------------------
@dataclass
class Share:
    share: float  # expected share interpretable, mean p
    lo: float
    hi: float
    n: int


def _draw_counts(X: np.ndarray, cal: Calibration, rng: np.random.Generator, draws: int) -> np.ndarray:
    """float [draws] share draws: coefficient draw x neuron resample x Bernoulli verdicts."""
    n = len(X)
    if n == 0:
        return np.full(draws, np.nan)
    out = np.empty(draws)
    B = len(cal.draws)
    for d in range(draws):
        coef = cal.draws[d % B] if B else cal.coef
        i = rng.integers(0, n, n)
        p = predict(X[i], coef)
        out[d] = (rng.random(n) < p).mean()
    return out


def share(X: np.ndarray, cal: Calibration | None = None, draws: int = DRAWS,
          seed: int = SEED) -> tuple[Share, np.ndarray]:
    """The calibrated share of one model's neurons (features X [N, d]) and its draws."""
    cal = cal or shipped()
    rng = np.random.default_rng(seed)
    d = _draw_counts(np.asarray(X, np.float64), cal, rng, draws)
    p = cal.p(X) if len(X) else np.array([np.nan])
    return Share(float(np.mean(p)), float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5)), len(X)), d


def difference(X_solu: np.ndarray, X_other: np.ndarray, cal: Calibration | None = None, draws: int = DRAWS,
               seed: int = SEED) -> tuple[Share, Share, tuple[float, float, float]]:
    """(SoLU share, other share, (difference, lo, hi)): both sides use the same coefficient draw per draw."""
    cal = cal or shipped()
    rng = np.random.default_rng(seed)
    a = _draw_counts(np.asarray(X_solu, np.float64), cal, rng, draws)
    b = _draw_counts(np.asarray(X_other, np.float64), cal, rng, draws)
    pa, pb = float(np.mean(cal.p(X_solu))), float(np.mean(cal.p(X_other)))
    sa = Share(pa, float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5)), len(X_solu))
    sb = Share(pb, float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5)), len(X_other))
    dd = a - b
    return sa, sb, (pa - pb, float(np.percentile(dd, 2.5)), float(np.percentile(dd, 97.5)))


# ---- rating sets (docs/studies) ------------------------------------------------------------------------------
@dataclass
class RatingSet:
    """One rated study folder: per item its features, label and the model (act_fn, hook kind) it came from."""

    name: str
    X: np.ndarray  # [n, d]
    y: np.ndarray  # [n] bool: the majority verdict is 'interpretable'
    decided: np.ndarray  # [n] bool: the majority is not 'unsure' (a tie counts as unsure)
    act_fn: np.ndarray  # [n] object
    hook_kind: np.ndarray  # [n] object
    init: np.ndarray  # [n] object: "trained", or a random-model control's "random" / "shuffled"
    unit: np.ndarray  # [n] object: "neuron", or "feature" (an item of a dictionary's feature, key.json "unit")
    arrays: dict  # store.measures.rules.rule_arrays of the items
    raters: list[str]
    folder: str = ""

    def neurons(self) -> "RatingSet":
        """The set's neuron items only (what the calibration is fitted on and the verdict reads)."""
        m = self.unit == "neuron"
        if m.all():
            return self
        return self.subset(m)

    def subset(self, m: np.ndarray) -> "RatingSet":
        return RatingSet(self.name, self.X[m], self.y[m], self.decided[m], self.act_fn[m], self.hook_kind[m],
                         self.init[m], self.unit[m], {k: v[m] for k, v in self.arrays.items()}, self.raters,
                         self.folder)

    def group(self, act_fn: str, hook_kind: str = "hook_post", init: str = "trained") -> np.ndarray:
        return (self.act_fn == act_fn) & (self.hook_kind == hook_kind) & (self.init == init)


def read_answers(folder: Path) -> dict[str, list[str]]:
    """item_id -> the raters' verdicts from answers_*.csv (header item_id,verdict)."""
    votes: dict[str, list[str]] = {}
    raters = sorted(folder.glob("answers_*.csv"))
    for f in raters:
        with open(f, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                votes.setdefault(row["item_id"].strip(), []).append(row["verdict"].strip())
    return votes


def _model_init(m: dict) -> str:
    """A key.json model's kind: its "model_init" (studies drawn since issue 20), else the store manifest's,
    else its checkpoint's ("init", or "random" for a checkpoint of step 0), else "trained"."""
    if m.get("model_init"):
        return str(m["model_init"])
    try:
        man = json.loads((Path(m["store"]) / "zarr.json").read_text(encoding="utf-8"))["attributes"]["neurobrowse"]
        if man.get("model_init"):
            return str(man["model_init"])
        ck = json.loads((Path(man["checkpoint_path"]) / "config.json").read_text(encoding="utf-8"))
        if ck.get("init"):
            return str(ck["init"])
        return "random" if int((ck.get("metrics") or {}).get("step", -1)) == 0 else "trained"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "trained"


def load_rating_set(folder: str | Path) -> RatingSet:
    """A rated study folder of docs/studies: study.json(.gz), key.json, answers_*.csv."""
    from neurobrowse.study.results import majority
    from store.measures.rule_windows import from_snippets
    from store.measures.rules import rule_arrays
    from store.schema import parse_hook_name

    folder = Path(folder)
    sj = folder / "study.json.gz"
    study = json.load(gzip.open(sj, "rt", encoding="utf-8")) if sj.exists() else \
        json.loads((folder / "study.json").read_text(encoding="utf-8"))
    key = json.loads((folder / "key.json").read_text(encoding="utf-8"))
    votes = read_answers(folder)
    items = [it for it in study["items"] if it["item_id"] in votes]
    win, voc = from_snippets([it["snippets"] for it in items])
    arrays = rule_arrays(win, voc)
    maj = np.array([majority(votes[it["item_id"]]) for it in items], dtype=object)
    models = {int(m["index"]): m for m in key["models"]}
    act = np.array([models[int(key["items"][it["item_id"]]["model"])]["act_fn"] for it in items], dtype=object)
    inits = {i: _model_init(m) for i, m in models.items()}
    seen: dict = {}
    for i, m in models.items():
        k = (m["act_fn"], inits[i])
        if k in seen:
            raise ValueError(f"{folder}: models {seen[k]} and {i} are both {inits[i]} {m['act_fn']}; say which is the "
                             "control with \"model_init\": \"random\" (or \"shuffled\") in key.json")
        seen[k] = i
    init = np.array([inits[int(key["items"][it["item_id"]]["model"])] for it in items], dtype=object)
    kind = np.array([parse_hook_name(key["items"][it["item_id"]]["hook"])[1] for it in items], dtype=object)
    unit = np.array([key["items"][it["item_id"]].get("unit", "neuron") for it in items], dtype=object)
    name = folder.name if folder.name != "study" else "/".join(folder.parts[-3:-1])
    return RatingSet(name, features(arrays), maj == "interpretable", maj != "unsure", act, kind, init, unit, arrays,
                     sorted(p.stem.split("_", 1)[1] for p in folder.glob("answers_*.csv")), str(folder))


def rating_sets(root: str | Path) -> list[RatingSet]:
    """Every rated set under ``root`` (docs/studies): folders with key.json and at least one answers file."""
    root = Path(root)
    return [load_rating_set(d) for d in sorted(root.iterdir())
            if d.is_dir() and (d / "key.json").exists() and any(d.glob("answers_*.csv"))]


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half."""
    from scipy.stats import rankdata

    s = np.asarray(score, np.float64)
    y = np.asarray(positive, bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if not npos or not nneg:
        return math.nan
    r = rankdata(s)
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


__all__ = ["FEATURES", "Calibration", "Share", "RatingSet", "fit", "fit_logistic", "predict", "shipped", "share",
           "difference", "features", "load_rating_set", "rating_sets", "roc_auc"]
