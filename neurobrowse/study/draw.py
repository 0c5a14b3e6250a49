"""Drawing a study: ``new_study`` samples neurons from each store, shuffles them together with a
recorded seed and writes the study folder (neurobrowse.study.folder).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
import numpy as np
from store.measures.columns import SCORES
from store.errors import NeurobrowseError
from store.format import atomic
from store.schema import is_feature_hook, parse_hook_name
from store.measures.scores import display_name
from neurobrowse.study.folder import RULE, STUDY_VERSION, StudyError, key_dir, relative_snippets
from neurobrowse.study.ratings import RatingsDB
from neurobrowse.study.results import AUC_SCORES


@dataclass
class StudyConfig:
    """How a study is drawn."""

    per_model: int = 60  # neurons drawn per store (the paper rated 60 per model)
    seed: int | None = None  # None: a fresh random seed, recorded in key.json
    hooks: tuple[str, ...] = ("hook_post",)  # hook kinds to draw from (each recorded layer's)
    snippets: int = 20  # top snippets shown per neuron (one per recorded context: distinct passages)
    context_before: int = 64  # tokens of context shown before the firing token (several lines)
    context_after: int = 16  # and after it
    per_layer: bool = False  # True: the same number of neurons from every layer (as near as divides), not uniform


# ---- drawing a study -------------------------------------------------------------------------------
def new_study(stores: Iterable[Any], out: str | os.PathLike, cfg: StudyConfig | None = None) -> Path:
    """Draw ``cfg.per_model`` neurons from each store (store.format.reader.Store or a path), shuffle them
    together, write the study folder. Refuses to overwrite an existing study."""
    from store.format.reader import as_store

    cfg = cfg or StudyConfig()
    out = Path(out)
    if (out / "study.json").exists() or (key_dir(out) / "key.json").exists():
        raise StudyError(f"{out} already holds a study; choose another --out (a study is never overwritten)")
    stores = [as_store(s) for s in stores]
    if len(stores) < 2:
        raise StudyError(f"a study compares models: give at least two stores (--stores A B), got {len(stores)}")
    runs = [s.run_uuid for s in stores]
    if len(set(runs)) != len(runs):
        raise StudyError("the same store is given twice; a study compares different models")
    seed = int(cfg.seed) if cfg.seed is not None else secrets.randbits(63)
    rng = np.random.default_rng(seed)
    items, key_items, models = [], {}, []
    for m, store in enumerate(stores):
        hooks = [h for h in store.hooks if parse_hook_name(h)[1] in cfg.hooks]
        if not hooks:
            raise StudyError(f"{store.path} records none of the hooks {list(cfg.hooks)}; it has {store.hooks}")
        for h in hooks:
            if not store.is_indexed(h):
                raise StudyError(f"{store.path}: hook {h} is not indexed; run `neurobrowse index {store.path}`")
        # a dictionary's features (kinds like hook_post.sae.8x-k32) are drawn apart, below
        feature_hooks = [h for h in hooks if is_feature_hook(h)]
        hooks = [h for h in hooks if not is_feature_hook(h)]
        init = str(store.manifest.get("model_init") or "trained")  # a random-model control: "random" / "shuffled"
        name = display_name(str(store.model_config.get("act_fn", f"model {m}")))
        models.append({"index": m, "act_fn": store.model_config.get("act_fn", "?"),
                       "name": name if init == "trained" else f"{name} {init} init" if init == "random" else
                       f"{name} {init}", "store": str(store.path), "run_uuid": store.run_uuid, "model_init": init})

        def add(hook: str, layer: int, n: int) -> None:
            view = store.neuron(hook, n)
            table = store.neuron_table(hook)
            snippets = [_crop(s, cfg) for s in view.top[:cfg.snippets]]
            items.append({"snippets": snippets})
            key_items[len(items) - 1] = {
                "model": m, "hook": hook, "layer": layer, "neuron": n,
                "scores": {k: _f(table[k][n]) for k in dict.fromkeys([*SCORES, *AUC_SCORES]) if k in table},
                "max_act": _f(table["max_act"][n]), **({"unit": "feature"} if is_feature_hook(hook) else {})}

        if hooks:
            # every candidate neuron: one per layer and index; with several hook kinds (hook_mid and hook_post
            # of SoLU-LN) a drawn neuron is shown once per kind, so both sides of the LayerNorm are rated blind
            layers = list(dict.fromkeys(parse_hook_name(h)[0] for h in hooks))
            pool = [(layer, n) for layer in layers for n in range(store.d_mlp)]
            if cfg.per_model > len(pool):
                raise StudyError(f"{store.path} has only {len(pool)} neurons in {list(cfg.hooks)}; "
                                 f"lower --per-model (asked {cfg.per_model})")
            if cfg.per_layer and len(layers) > 1:  # every layer represented: per_model split as evenly as it divides
                counts = [cfg.per_model // len(layers) + (i < cfg.per_model % len(layers)) for i in range(len(layers))]
                picks = np.concatenate([i * store.d_mlp + rng.choice(store.d_mlp, size=c, replace=False)
                                        for i, c in enumerate(counts)])
            else:
                picks = rng.choice(len(pool), size=cfg.per_model, replace=False)
            for p in sorted(int(x) for x in picks):
                layer, n = pool[p]
                for hook in [h for h in hooks if parse_hook_name(h)[0] == layer]:
                    add(hook, layer, n)
        for hook in feature_hooks:  # per dictionary, per_model of its live features (dead ones have no firings)
            live = np.flatnonzero(np.asarray(store.neuron_table(hook)["max_act"]) > 0)
            if cfg.per_model > len(live):
                raise StudyError(f"{store.path}: {hook} has only {len(live)} live features; lower --per-model "
                                 f"(asked {cfg.per_model})")
            for n in sorted(int(x) for x in rng.choice(live, size=cfg.per_model, replace=False)):
                add(hook, parse_hook_name(hook)[0], n)
    order = bounded_order(rng, [key_items[i]["model"] for i in range(len(items))])
    ids = _item_ids(rng, len(items))
    study_items, key = [], {}
    for pos, src in enumerate(order):
        iid = ids[pos]
        study_items.append({"item_id": iid, "snippets": relative_snippets(items[src]["snippets"])})
        key[iid] = key_items[src]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    study = {"kind": "neurobrowse-study", "version": STUDY_VERSION, "created": created, "rule": RULE,
             "n_items": len(study_items), "items": study_items}
    key_doc = {"kind": "neurobrowse-study-key", "version": STUDY_VERSION, "created": created, "seed": seed,
               "per_model": cfg.per_model, "hooks": list(cfg.hooks), "snippets": cfg.snippets,
               "models": models, "items": key}
    keys = key_dir(out)
    made, made_key = not out.exists(), not keys.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        keys.mkdir(parents=True, exist_ok=True)
        with atomic.output(keys / "key.json", error=StudyError) as f:  # apart from what raters are handed
            json.dump(key_doc, f, indent=1)
        with atomic.output(out / "study.json", error=StudyError) as f:  # last: its presence means a whole study
            json.dump(study, f, ensure_ascii=False, separators=(",", ":"))
        RatingsDB(out).close()
    except (OSError, NeurobrowseError):
        for d, fresh in ((out, made), (keys, made_key)):
            if fresh:  # a full disk or a read-only place: leave no half-made study folder behind
                shutil.rmtree(d, ignore_errors=True)
        raise
    return out


MAX_RUN = 3  # at most this many items of one model in a row in a study's order


def bounded_order(rng: np.random.Generator, models: list[int], max_run: int = MAX_RUN) -> list[int]:
    """A random order of the items (their indices) in which no model has more than ``max_run`` items in a
    row, so a rater cannot tell the models apart by streaks (a plain shuffle of 60 + 60 items often has runs
    of 5 or more). Each step picks a model at random, weighted by how many of its items are left, among the
    models that would not make a run too long; where only such a model is left (too few of the others) the
    draw starts again, and after 200 tries the order with the shortest longest run is kept."""
    by_model: dict[int, list[int]] = {}
    for i, m in enumerate(models):
        by_model.setdefault(m, []).append(i)
    best, best_run = None, None
    for _ in range(200):
        left = {m: list(rng.permutation(ix)) for m, ix in by_model.items()}
        out, run_model, run, worst = [], None, 0, 0
        while any(left.values()):
            ok = [m for m, ix in left.items() if ix and not (m == run_model and run >= max_run)]
            if not ok:  # only the model that just ran is left: finish it (this try fails)
                ok = [m for m, ix in left.items() if ix]
            w = np.array([len(left[m]) for m in ok], dtype=np.float64)
            m = ok[int(rng.choice(len(ok), p=w / w.sum()))]
            out.append(left[m].pop())
            run = run + 1 if m == run_model else 1
            run_model = m
            worst = max(worst, run)
        if best_run is None or worst < best_run:
            best, best_run = out, worst
        if worst <= max_run:
            break
    return [int(i) for i in best] if best is not None else []


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _item_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Opaque, unique ids (from the seeded generator, so a study is reproducible from its seed)."""
    seen: set[str] = set()
    out = []
    while len(out) < n:
        iid = "".join(f"{b:02x}" for b in rng.integers(0, 256, size=4).tolist())
        if iid not in seen:
            seen.add(iid)
            out.append(iid)
    return out


def _crop(snip: Any, cfg: StudyConfig) -> dict:
    """A store Snippet cut to the tokens the model saw with it, at most ``context_before`` / ``context_after``
    around the firing token: tokens, acts (4 decimals), center."""
    lo, hi = snip.crop(cfg.context_before, cfg.context_after)
    acts = np.asarray(snip.acts[lo:hi], dtype=np.float64)
    return {"tokens": list(snip.tokens[lo:hi]), "acts": np.round(acts, 4).tolist(), "center": snip.center - lo}
