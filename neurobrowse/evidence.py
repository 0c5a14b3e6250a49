"""The evidence two stores give on the SoLU paper's question, gathered for neurobrowse.verdict.decide.

``store_verdict`` is the one path from two stores to a Verdict (the CLI's `compare --summary`, the
compare window and `study report` all go through it):

* which side is SoLU: from each store's manifest (``model_config.act_fn``), never from a label;
* a reported blinded study of exactly these two recordings, found inside the stores
  (neurobrowse.study.registry: `study report` records it there);
* the calibrated rule proxy over every neuron of the compared hooks (store.measures.rules ->
  neurobrowse.calibration), and the threshold scores of store.columns;
* random-model controls: the stores given, or found beside the compared ones (``find_controls``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurobrowse import calibration, verdict

SOLU_ACT_FNS = ("solu_ln", "solu")
CONTROL_INITS = ("random", "shuffled")


def act_fn(store) -> str:
    return str((store.model_config or {}).get("act_fn", ""))


def model_init(store) -> str:
    """'trained', or the kind of a random-model control ('random', 'shuffled'), from the store manifest."""
    return str(store.manifest.get("model_init") or "trained")


def solu_side(stores) -> int | None:
    """Index of the SoLU store of two (manifest act_fn solu_ln or solu), None when neither or both are."""
    s = [i for i, st in enumerate(stores) if act_fn(st) in SOLU_ACT_FNS]
    return s[0] if len(s) == 1 else None


def display(store) -> str:
    from store.measures.scores import display_name

    name = display_name(act_fn(store) or Path(store.path).name)
    init = model_init(store)
    return name if init == "trained" else f"{name} {init} init" if init == "random" else f"{name} {init}"


def hooks_of(store, hook_kind: str = "hook_post") -> list[str]:
    return [h for h in store.hooks if h.endswith(hook_kind) and store.is_indexed(h)]


def rule_features(store, hook_kind: str = "hook_post") -> np.ndarray:
    """float64 [neurons of every indexed hook_kind hook, len(calibration.FEATURES)] (cached per store)."""
    from store.measures.rules import store_rules

    cache = store.__dict__.setdefault("_rule_features", {})
    if hook_kind not in cache:
        parts = [calibration.features(store_rules(store, h)[0]) for h in hooks_of(store, hook_kind)]
        cache[hook_kind] = np.vstack(parts) if parts else np.zeros((0, len(calibration.FEATURES)))
    return cache[hook_kind]


def calibrated_evidence(solu_store, other_store, hook_kind: str = "hook_post",
                        cal: calibration.Calibration | None = None) -> verdict.CalibratedEvidence:
    cal = cal or calibration.shipped()
    xs, xo = rule_features(solu_store, hook_kind), rule_features(other_store, hook_kind)
    sa, sb, (d, lo, hi) = calibration.difference(xs, xo, cal)
    return verdict.CalibratedEvidence((sa.share, sb.share), ((sa.lo, sa.hi), (sb.lo, sb.hi)), (sa.n, sb.n), d,
                                      (lo, hi), tuple(cal.sets))


def find_controls(stores) -> list:
    """Random-model control stores beside the compared ones: in the same parent folders, indexed, with
    manifest model_init random / shuffled, the same corpus and the same model shape as one of them."""
    from store.errors import NeurobrowseError
    from store.format.reader import Store

    seen, out = {str(Path(s.path).resolve()) for s in stores}, []
    shape_keys = ("n_layers", "d_model", "d_mlp", "n_ctx", "d_vocab")

    def shape(st):
        return tuple((st.model_config or {}).get(k) for k in shape_keys)

    wanted = {(shape(s), s.manifest.get("corpus_manifest_hash")) for s in stores}
    for parent in dict.fromkeys(Path(s.path).resolve().parent for s in stores):
        try:
            entries = sorted(parent.iterdir())
        except OSError:
            continue
        for d in entries:
            if str(d) in seen or not (d / "zarr.json").exists():
                continue
            try:
                st = Store.open(d)
            except (NeurobrowseError, OSError):
                continue
            if model_init(st) in CONTROL_INITS and (shape(st), st.manifest.get("corpus_manifest_hash")) in wanted \
                    and hooks_of(st):
                seen.add(str(d))
                out.append(st)
    return out


def control_evidence(controls, hook_kind: str = "hook_post", cal: calibration.Calibration | None = None,
                     threshold_score: str = verdict.PROXY_ORDER[0]) -> list[verdict.ControlEvidence]:
    from store.measures import columns

    cal = cal or calibration.shipped()
    out = []
    for st in controls:
        x = rule_features(st, hook_kind)
        if not len(x):
            continue
        sh, _ = calibration.share(x, cal)
        th = columns.THRESHOLDS.get(threshold_score)
        vals = np.concatenate([np.asarray(st.neuron_table(h).get(threshold_score, []), np.float64)
                               for h in hooks_of(st, hook_kind)])
        fin = vals[np.isfinite(vals)]
        title = columns.BY_NAME[threshold_score].title if threshold_score in columns.BY_NAME else threshold_score
        out.append(verdict.ControlEvidence(display(st), act_fn(st), model_init(st), sh.share, (sh.lo, sh.hi), sh.n,
                                           float((fin >= th).mean()) if fin.size and th is not None else math.nan,
                                           f"{title} ≥ {th:g}" if th is not None else ""))
    return out


def store_verdict(store_a, store_b, tables, thresholds: dict[str, float] | None = None, controls=None,
                  hook_kind: str = "hook_post", calibrated: bool = True):
    """neurobrowse.verdict.Verdict for two stores (None when not exactly one of them is a SoLU model).

    tables: the two stores' neuron tables over the compared hooks (for the threshold proxies);
    controls: control Stores (None: ``find_controls``; [] for none)."""
    from neurobrowse.study.registry import reported_study
    from store.measures import columns

    stores = (store_a, store_b)
    solu = solu_side(stores)
    if solu is None:
        return None
    order = (solu, 1 - solu)
    names = (display(stores[order[0]]), display(stores[order[1]]))
    thresholds = thresholds or columns.THRESHOLDS
    ev = [verdict.score_evidence(name, columns.BY_NAME[name].title if name in columns.BY_NAME else name, th,
                                 tables[order[0]].get(name, []), tables[order[1]].get(name, []))
          for name, th in thresholds.items()
          if np.isfinite(np.asarray(tables[0].get(name, []), np.float64)).any()]
    study = reported_study(stores[order[0]], stores[order[1]])
    cal_ev = calibrated_evidence(stores[order[0]], stores[order[1]], hook_kind) if calibrated else None
    ctl = find_controls(stores) if controls is None else list(controls)
    return verdict.decide(names, ev, study, cal_ev, control_evidence(ctl, hook_kind))


__all__ = ["store_verdict", "solu_side", "find_controls", "control_evidence", "calibrated_evidence", "model_init",
           "rule_features", "display"]
