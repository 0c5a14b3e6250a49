"""The blinded rating study of the SoLU paper (section 6.1), without Qt.

``new_study`` draws a random sample of neurons from each store (60 per model by default, as in the
paper), shuffles them together with a recorded seed and writes a study folder::

    STUDY/study.json     what raters see: blinded item ids and, per item, its top snippets
                         (token strings + activations). No model, store, neuron id, statistic or score.
    STUDY/key.json       the unblinding key: item id -> store, run UUID, model, hook, neuron and the
                         automated scores; plus the seed. Only ``study_report`` opens it.
    STUDY/ratings.sqlite every rating: rater, item id, verdict, seconds spent, time. SQLite (WAL,
                         BEGIN IMMEDIATE) so several raters can rate the same study at once; each
                         rater sees only their own progress. A re-rating appends; the latest counts.
    STUDY/report/        written by ``study_report``: report.txt, report.csv, report.png.

Rating is done in the app (``StudySession`` drives neurobrowse.qt.study_window.StudyWindow) or
scripted with ``rate_from_answers`` (a CSV ``item_id,verdict`` or a JSON ``{item_id: verdict}``).

The report (the only place the models are unblinded) counts neurons, not ratings: each item's
verdict is the raters' majority (a tie is unsure), and per model it gives the share of neurons whose
verdict is "interpretable" (unsure counts as not) with a 95% Wilson interval and a two-sided Fisher
exact test of GeLU against SoLU-LN on those neuron counts, so two raters do not double the sample.
Secondary lines: every rating pooled, per-rater shares, and the Fisher test on pooled ratings.
Agreement between raters: Cohen's kappa for two raters, Fleiss' kappa for more (over the items every
rater rated, three categories). And the ROC AUC with which every automated score (AUC_SCORES: the
rule explanation score, token-rule score and token lookup correlation, read from the stores at
report time so scores added later are checked too) predicts the neurons' majority verdict
(unsure neurons left out). ``study_report`` also writes report.json and lists the study in a
registry (``registry_path``) so that `compare` can lead with it (``reported_study``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from neurobrowse.stats import cohen_kappa, fisher_exact, fleiss_kappa, roc_auc, wilson_interval
from store.measures.columns import SCORES
from store.errors import NeurobrowseError
from store.export.neurons import atomic_output
from store.labels.label import VERDICTS, default_author
from store.format.schema import parse_hook_name
from store.measures.scores import display_name

STUDY_VERSION = 1
RULE = ("Rate a neuron interpretable when at least 80% of its strongest firings (the red tokens) "
        "follow one rule or belong to one category you could name. Otherwise rate it not "
        "interpretable; use unsure only when you cannot decide.")


class StudyError(NeurobrowseError):
    """A study folder or answers file that cannot be used; the message names the file."""


@dataclass
class StudyConfig:
    """How a study is drawn."""

    per_model: int = 60  # neurons drawn per store (the paper rated 60 per model)
    seed: int | None = None  # None: a fresh random seed, recorded in key.json
    hooks: tuple[str, ...] = ("hook_post",)  # hook kinds to draw from (each recorded layer's)
    snippets: int = 20  # top snippets shown per neuron (one per recorded context: distinct passages)
    context_before: int = 64  # tokens of context shown before the firing token (several lines)
    context_after: int = 16  # and after it


@dataclass
class StudyItem:
    """One blinded item as a rater sees it: an opaque id and snippets (tokens, acts, center)."""

    item_id: str
    snippets: list[dict] = field(default_factory=list)


# ---- drawing a study -------------------------------------------------------------------------------
def new_study(stores: Iterable[Any], out: str | os.PathLike, cfg: StudyConfig | None = None) -> Path:
    """Draw ``cfg.per_model`` neurons from each store (store.format.reader.Store or a path), shuffle them
    together, write the study folder. Refuses to overwrite an existing study."""
    from store.format.reader import as_store

    cfg = cfg or StudyConfig()
    out = Path(out)
    if (out / "study.json").exists():
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
        # every candidate neuron: one per layer and index; with several hook kinds (hook_mid and hook_post
        # of SoLU-LN) a drawn neuron is shown once per kind, so both sides of the LayerNorm are rated blind
        layers = list(dict.fromkeys(parse_hook_name(h)[0] for h in hooks))
        pool = [(layer, n) for layer in layers for n in range(store.d_mlp)]
        if cfg.per_model > len(pool):
            raise StudyError(f"{store.path} has only {len(pool)} neurons in {list(cfg.hooks)}; "
                             f"lower --per-model (asked {cfg.per_model})")
        picks = rng.choice(len(pool), size=cfg.per_model, replace=False)
        models.append({"index": m, "act_fn": store.model_config.get("act_fn", "?"),
                       "name": display_name(str(store.model_config.get("act_fn", f"model {m}"))),
                       "store": str(store.path), "run_uuid": store.run_uuid})
        for p in sorted(int(x) for x in picks):
            layer, n = pool[p]
            for hook in [h for h in hooks if parse_hook_name(h)[0] == layer]:
                view = store.neuron(hook, n)
                table = store.neuron_table(hook)
                snippets = [_crop(s, cfg) for s in view.top[:cfg.snippets]]
                items.append({"snippets": snippets})
                key_items[len(items) - 1] = {
                    "model": m, "hook": hook, "layer": layer, "neuron": n,
                    "scores": {k: _f(table[k][n]) for k in dict.fromkeys([*SCORES, *AUC_SCORES]) if k in table},
                    "max_act": _f(table["max_act"][n])}
    order = rng.permutation(len(items))
    ids = _item_ids(rng, len(items))
    study_items, key = [], {}
    for pos, src in enumerate(order.tolist()):
        iid = ids[pos]
        study_items.append({"item_id": iid, "snippets": items[src]["snippets"]})
        key[iid] = key_items[src]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    study = {"kind": "neurobrowse-study", "version": STUDY_VERSION, "created": created, "rule": RULE,
             "n_items": len(study_items), "items": study_items}
    key_doc = {"kind": "neurobrowse-study-key", "version": STUDY_VERSION, "created": created, "seed": seed,
               "per_model": cfg.per_model, "hooks": list(cfg.hooks), "snippets": cfg.snippets,
               "models": models, "items": key}
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / "key.json") as f:
            json.dump(key_doc, f, indent=1)
        with atomic_output(out / "study.json") as f:  # written last: its presence means the study is whole
            json.dump(study, f, ensure_ascii=False, separators=(",", ":"))
        RatingsDB(out).close()
    except (OSError, NeurobrowseError):
        if made:  # a full disk or a read-only place: leave no half-made study folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


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
    lo = max(snip.ctx_lo, snip.center - cfg.context_before)
    hi = min(snip.ctx_hi, snip.center + cfg.context_after + 1)
    acts = np.asarray(snip.acts[lo:hi], dtype=np.float64)
    return {"tokens": list(snip.tokens[lo:hi]), "acts": np.round(acts, 4).tolist(), "center": snip.center - lo}


# ---- reading a study -------------------------------------------------------------------------------
def load_items(study: str | os.PathLike) -> list[StudyItem]:
    """The blinded items, in study order (never opens key.json)."""
    path = Path(study) / "study.json"
    if not path.is_file():
        raise StudyError(f"{study} is not a study folder (no study.json); create one with `neurobrowse study new`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StudyError(f"{path} is damaged ({e})") from None
    if doc.get("kind") != "neurobrowse-study" or int(doc.get("version", 0)) > STUDY_VERSION:
        raise StudyError(f"{path} is not a study this neurobrowse reads (kind {doc.get('kind')!r}, "
                         f"version {doc.get('version')})")
    return [StudyItem(it["item_id"], it["snippets"]) for it in doc["items"]]


def load_key(study: str | os.PathLike) -> dict:
    path = Path(study) / "key.json"
    if not path.is_file():
        raise StudyError(f"{path} is missing: the study cannot be unblinded without its key")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StudyError(f"{path} is damaged ({e})") from None


# ---- ratings ---------------------------------------------------------------------------------------
class RatingsDB:
    """STUDY/ratings.sqlite: append-only ratings, the latest per (rater, item) counts."""

    def __init__(self, study: str | os.PathLike, busy_timeout_s: float = 10.0):
        self.path = Path(study) / "ratings.sqlite"
        self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS ratings (id INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL, "
                "item_id TEXT NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN ('interpretable', "
                "'not_interpretable', 'unsure')), seconds REAL, time TEXT NOT NULL)")
        except sqlite3.Error as e:
            self.conn.close()
            raise StudyError(f"the ratings database {self.path} cannot be used: {e}") from None

    def add(self, rows: list[tuple[str, str, str, float | None]]) -> None:
        """Append (rater, item_id, verdict, seconds) rows in one transaction (all or nothing)."""
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("INSERT INTO ratings (rater, item_id, verdict, seconds, time) VALUES (?,?,?,?,?)",
                                      [(*r, now) for r in rows])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            what = "stayed locked by another rater" if "locked" in str(e) else f"failed ({e})"
            raise StudyError(f"saving ratings to {self.path} {what}; nothing of this step was saved, "
                             "retry") from None

    def add_one(self, rater: str, item_id: str, verdict: str, seconds: float | None) -> int:
        """Append one rating; returns its row id (what ``remove`` takes to undo it)."""
        self.add([(rater, item_id, verdict, seconds)])
        row = self.conn.execute("SELECT max(id) FROM ratings WHERE rater = ? AND item_id = ?", (rater, item_id))
        return int(row.fetchone()[0])

    def remove(self, row_id: int) -> None:
        """Delete one rating row (undo): the rater's previous rating of that item, if any, counts again."""
        try:
            self.conn.execute("DELETE FROM ratings WHERE id = ?", (int(row_id),))
        except sqlite3.Error as e:
            raise StudyError(f"undoing a rating in {self.path} failed ({e}); retry") from None

    def latest(self, rater: str | None = None) -> dict[tuple[str, str], tuple[str, float | None]]:
        """{(rater, item_id): (verdict, seconds)} of the latest rating of each."""
        sql = ("SELECT rater, item_id, verdict, seconds FROM ratings r WHERE id = (SELECT max(id) FROM ratings "
               "WHERE rater = r.rater AND item_id = r.item_id)")
        args: tuple = ()
        if rater is not None:
            sql += " AND rater = ?"
            args = (rater,)
        return {(a, b): (v, s) for a, b, v, s in self.conn.execute(sql, args).fetchall()}

    def raters(self) -> list[str]:
        return [r for (r,) in self.conn.execute("SELECT DISTINCT rater FROM ratings ORDER BY rater")]

    def close(self) -> None:
        self.conn.close()


class StudySession:
    """One rater's pass through a study: the current item, rating, pause / resume, timing.

    Time per item counts from the moment the item is shown to the rating, minus paused time.
    Ratings are saved at once, so closing the window and starting again resumes at the first item
    this rater has not rated. ``clock`` is injectable for tests (default time.monotonic).
    """

    def __init__(self, study: str | os.PathLike, rater: str | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.study = Path(study)
        self.rater = (rater or default_author()).strip()
        if not self.rater:
            raise StudyError("a rater name is needed (--rater NAME)")
        self.items = load_items(self.study)
        self.rule = RULE
        self.db = RatingsDB(self.study)
        self.clock = clock
        done = self.db.latest(self.rater)
        self.ratings: dict[str, tuple[str, float | None]] = {iid: v for (_, iid), v in done.items()}
        self.paused = False
        self._pause_started = 0.0
        self._paused_total = 0.0
        self._shown_at = self.clock()
        self._undo: list[tuple[int, int, tuple[str, float | None] | None]] = []  # (row id, item index, previous)
        self.index = self._next_unrated(0)

    def _next_unrated(self, start: int) -> int:
        for i in range(start, len(self.items)):
            if self.items[i].item_id not in self.ratings:
                return i
        for i in range(0, start):
            if self.items[i].item_id not in self.ratings:
                return i
        return len(self.items)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.items)

    def current(self) -> StudyItem | None:
        return None if self.finished else self.items[self.index]

    def progress(self) -> tuple[int, int]:
        """(items rated by this rater, items in the study)."""
        return len(self.ratings), len(self.items)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._pause_started = self.clock()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._paused_total += self.clock() - self._pause_started

    def rate(self, verdict: str) -> StudyItem | None:
        """Rate the current item; returns the next item (None when done). Refused while paused."""
        if verdict not in VERDICTS:
            raise StudyError(f"unknown verdict {verdict!r}; use one of {', '.join(VERDICTS)}")
        if self.paused:
            raise StudyError("the study is paused; resume before rating")
        item = self.current()
        if item is None:
            raise StudyError("every item of this study is rated already")
        seconds = max(0.0, self.clock() - self._shown_at - self._paused_total)
        row = self.db.add_one(self.rater, item.item_id, verdict, seconds)
        self._undo.append((row, self.index, self.ratings.get(item.item_id)))
        self.ratings[item.item_id] = (verdict, seconds)
        self.index = self._next_unrated(self.index + 1)
        self._shown_at, self._paused_total = self.clock(), 0.0
        return self.current()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) and not self.paused

    def undo(self) -> StudyItem:
        """Take back this session's last rating (its row is deleted) and show that item again."""
        if self.paused:
            raise StudyError("the study is paused; resume before undoing a rating")
        if not self._undo:
            raise StudyError("there is no rating of this session to undo")
        row, index, previous = self._undo.pop()
        self.db.remove(row)
        item = self.items[index]
        if previous is None:
            self.ratings.pop(item.item_id, None)
        else:
            self.ratings[item.item_id] = previous
        self.index = index
        self._shown_at, self._paused_total = self.clock(), 0.0
        return item

    def close(self) -> None:
        self.db.close()


def rate_from_answers(study: str | os.PathLike, rater: str, answers: str | os.PathLike) -> int:
    """Scripted rating: ``answers`` is a CSV with columns item_id,verdict or a JSON object
    {item_id: verdict}. Every line is checked first; all are saved in one transaction or none.
    Returns the number of ratings saved."""
    answers = Path(answers)
    items = {it.item_id for it in load_items(study)}
    if not answers.is_file():
        raise StudyError(f"no answers file at {answers}")
    text = answers.read_text(encoding="utf-8")
    pairs: list[tuple[int, str, str]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise StudyError(f"{answers} is not valid JSON ({e}); nothing was saved") from None
        pairs = [(0, str(k), str(v)) for k, v in doc.items()]
    else:
        rows = list(csv.reader(text.splitlines()))
        if not rows or [c.strip() for c in rows[0][:2]] != ["item_id", "verdict"]:
            raise StudyError(f"{answers}, line 1: expected the header 'item_id,verdict'; nothing was saved")
        for lineno, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            if len(row) != 2:
                raise StudyError(f"{answers}, line {lineno}: expected 2 fields, got {len(row)}; nothing was saved")
            pairs.append((lineno, row[0].strip(), row[1].strip()))
    out = []
    for lineno, iid, verdict in pairs:
        where = f"{answers}, line {lineno}" if lineno else f"{answers}, item {iid!r}"
        if iid not in items:
            raise StudyError(f"{where}: no item {iid!r} in this study; nothing was saved")
        if verdict not in VERDICTS:
            raise StudyError(f"{where}: unknown verdict {verdict!r} (use {', '.join(VERDICTS)}); nothing was saved")
        out.append((rater, iid, verdict, None))
    db = RatingsDB(study)
    try:
        db.add(out)
    finally:
        db.close()
    return len(out)


# ---- the report ------------------------------------------------------------------------------------
@dataclass
class ModelResult:
    name: str
    act_fn: str
    n_items: int  # neurons drawn from this model
    n_ratings: int  # pooled ratings (secondary figures)
    interpretable: int
    not_interpretable: int
    unsure: int
    share: float
    ci_low: float
    ci_high: float
    per_rater: dict[str, tuple[int, int]]  # rater -> (interpretable, ratings)
    # per item (neuron): the raters' majority verdict, ties unsure; the study's primary figures
    items_rated: int = 0
    items_interpretable: int = 0
    items_not: int = 0
    items_unsure: int = 0
    hook_kind: str = ""  # set when the study shows several hook kinds (hook_mid and hook_post)
    run_uuid: str = ""

    @property
    def item_share(self) -> float:
        return self.items_interpretable / self.items_rated if self.items_rated else math.nan

    @property
    def item_interval(self) -> tuple[float, float]:
        return wilson_interval(self.items_interpretable, self.items_rated)


def majority(verdicts: list[str]) -> str:
    """The raters' majority verdict of one item: the verdict given most often; a tie is unsure."""
    counts = sorted(((verdicts.count(v), v) for v in set(verdicts)), reverse=True)
    if not counts:
        return "unsure"
    if len(counts) > 1 and counts[0][0] == counts[1][0]:
        return "unsure"
    return counts[0][1]


REGISTRY_ENV = "NEUROBROWSE_STUDIES"  # overrides where reported studies are listed (for compare)


def registry_path() -> Path:
    """``$NEUROBROWSE_STUDIES`` if set, else ``<user data dir>/neurobrowse/studies.jsonl``: one line per
    reported study (path, models' run UUIDs, per-item counts), read by ``reported_study``."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("neurobrowse", appauthor=False) / "studies.jsonl"


def _item_scores(key: dict) -> dict[str, dict[str, float]]:
    """{item id: {score: value}} for every automated score column, read from the stores now (so a
    score added after the study was drawn, such as the rule explanation score, is checked too);
    the scores saved in key.json where a store is gone or re-recorded."""
    from store.format.reader import Store

    tables: dict = {}
    out: dict[str, dict[str, float]] = {}
    models = {int(m["index"]): m for m in key["models"]}
    for iid, it in key["items"].items():
        vals = {k: (math.nan if v is None else float(v)) for k, v in (it.get("scores") or {}).items()}
        m = models.get(int(it["model"]), {})
        tk = (m.get("store"), it["hook"])
        if tk not in tables:
            try:
                st = Store.open(m.get("store"))
                tables[tk] = st.neuron_table(it["hook"]) if st.run_uuid == m.get("run_uuid") else None
            except (NeurobrowseError, OSError, TypeError):
                tables[tk] = None
        t = tables[tk]
        if t is not None:
            for name in AUC_SCORES:
                if name in t:
                    vals[name] = float(t[name][int(it["neuron"])])
        out[iid] = vals
    return out


AUC_SCORES = SCORES  # every automated score of store.measures.columns is checked against the verdicts


def compute_report(study: str | os.PathLike) -> dict:
    """Unblind and compute every statistic of the report (see the module docstring). Pure data."""
    study = Path(study)
    items = load_items(study)
    key = load_key(study)
    db = RatingsDB(study)
    try:
        latest = db.latest()
    finally:
        db.close()
    raters = sorted({r for r, _ in latest})
    if not raters:
        raise StudyError(f"{study} has no ratings yet; rate it with `neurobrowse study rate {study} --rater NAME`")
    models = key["models"]
    # groups: one per model, or per (model, hook kind) when the study shows both sides of a LayerNorm
    several = len(key.get("hooks") or ()) > 1
    model_of = {iid: (int(k["model"]), parse_hook_name(k["hook"])[1] if several else "")
                for iid, k in key["items"].items()}
    groups = [(int(m["index"]), kind) for m in models
              for kind in (list(key["hooks"]) if several else [""])
              if any(g == (int(m["index"]), kind) for g in model_of.values())]
    by_item: dict[str, list[str]] = {}
    for (_, iid), (v, _) in latest.items():
        by_item.setdefault(iid, []).append(v)
    item_verdict = {iid: majority(vs) for iid, vs in by_item.items()}
    results = []
    for mi, kind in groups:
        m = models[mi]
        mi = (mi, kind)
        vs = [(r, v) for (r, iid), (v, _) in latest.items() if model_of[iid] == mi]
        n = len(vs)
        k = sum(v == "interpretable" for _, v in vs)
        lo, hi = wilson_interval(k, n)
        per = {r: (sum(v == "interpretable" for rr, v in vs if rr == r), sum(rr == r for rr, _ in vs)) for r in raters}
        iv = [v for iid, v in item_verdict.items() if model_of[iid] == mi]
        results.append(ModelResult(name=f"{m['name']} {kind}" if kind else m["name"], act_fn=m["act_fn"],
                                   n_items=sum(1 for x in model_of.values() if x == mi), n_ratings=n,
                                   interpretable=k, not_interpretable=sum(v == "not_interpretable" for _, v in vs),
                                   unsure=sum(v == "unsure" for _, v in vs), share=k / n if n else math.nan,
                                   ci_low=lo, ci_high=hi, per_rater=per, items_rated=len(iv),
                                   items_interpretable=iv.count("interpretable"),
                                   items_not=iv.count("not_interpretable"), items_unsure=iv.count("unsure"),
                                   hook_kind=kind, run_uuid=m["run_uuid"]))
    # Fisher exact test: GeLU vs SoLU-LN when both are present, else the first two models; on items
    # (majority verdicts: two raters do not double the sample), and on pooled ratings as a secondary line
    by_fn = {(r.act_fn, r.hook_kind): r for r in results}
    main = "hook_post" if several else ""
    pair = ([by_fn[("gelu", main)], by_fn[("solu_ln", main)]] if ("gelu", main) in by_fn and ("solu_ln", main) in by_fn
            else results[:2] if len(results) >= 2 else [])
    fisher = fisher_ratings = None
    if pair and all(r.items_rated for r in pair):
        tbl = [[r.items_interpretable, r.items_rated - r.items_interpretable] for r in pair]
        odds, p = fisher_exact(tbl)
        fisher = {"a": pair[0].name, "b": pair[1].name, "table": tbl, "odds_ratio": float(odds), "p_value": float(p)}
        tbl = [[r.interpretable, r.n_ratings - r.interpretable] for r in pair]
        odds, p = fisher_exact(tbl)
        fisher_ratings = {"a": pair[0].name, "b": pair[1].name, "table": tbl, "odds_ratio": float(odds),
                          "p_value": float(p)}
    # the LayerNorm question: the same SoLU-LN neurons rated before (hook_mid) and after (hook_post) the LN
    fisher_ln = None
    ln = [by_fn.get(("solu_ln", "hook_mid")), by_fn.get(("solu_ln", "hook_post"))]
    if all(r is not None and r.items_rated for r in ln):
        tbl = [[r.items_interpretable, r.items_rated - r.items_interpretable] for r in ln]
        odds, p = fisher_exact(tbl)
        fisher_ln = {"a": ln[0].name, "b": ln[1].name, "table": tbl, "odds_ratio": float(odds), "p_value": float(p)}
    # agreement over the items every rater rated
    common = [it.item_id for it in items if all((r, it.item_id) in latest for r in raters)]
    agreement: dict[str, Any] = {"raters": raters, "n_items": len(common)}
    if len(raters) == 2:
        a = [latest[(raters[0], i)][0] for i in common]
        b = [latest[(raters[1], i)][0] for i in common]
        agreement.update(method="cohen", kappa=cohen_kappa(a, b, VERDICTS))
    elif len(raters) > 2:
        table = np.array([[sum(latest[(r, i)][0] == c for r in raters) for c in VERDICTS] for i in common])
        agreement.update(method="fleiss", kappa=fleiss_kappa(table.reshape(-1, len(VERDICTS))))
    else:
        agreement.update(method=None, kappa=math.nan)
    # ROC AUC of each automated score predicting the items' majority verdict (unsure items left out)
    decided = [(iid, v) for iid, v in item_verdict.items() if v != "unsure"]
    positive = np.array([v == "interpretable" for _, v in decided], dtype=bool)
    scores = _item_scores(key)
    names = [s for s in dict.fromkeys([*AUC_SCORES, *SCORES])
             if any(math.isfinite(scores[iid].get(s, math.nan)) for iid, _ in decided)]
    aucs = {}
    for s in names:
        vals = np.array([scores[iid].get(s, math.nan) for iid, _ in decided], dtype=np.float64)
        aucs[s] = {"auc": roc_auc(vals, positive) if len(decided) else math.nan,
                   "n_positive": int(positive.sum()), "n_negative": int((~positive).sum()),
                   "n_scored": int(np.isfinite(vals).sum())}
    times = [s for (_, _), (_, s) in latest.items() if s is not None]
    return {"study": str(study), "seed": key["seed"], "n_items": len(items), "raters": raters,
            "models": results, "fisher": fisher, "fisher_ratings": fisher_ratings, "fisher_ln": fisher_ln,
            "agreement": agreement, "auc": aucs,
            "median_seconds_per_item": float(np.median(times)) if times else None}


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def report_text(rep: dict) -> str:
    n_r = len(rep["raters"])
    lines = [f"Blinded rating study {rep['study']} (seed {rep['seed']}): {rep['n_items']} items, "
             f"raters: {', '.join(rep['raters'])}", "",
             f"Share of neurons 'interpretable' by the raters' majority verdict per neuron (ties and unsure "
             f"count as not), 95% Wilson interval{' (one rater: their verdicts)' if n_r == 1 else ''}:"]
    for r in rep["models"]:
        lo, hi = r.item_interval
        lines.append(f"  {r.name:<8} {r.items_interpretable:>4}/{r.items_rated:<4} = {100 * r.item_share:5.1f}%  "
                     f"[{100 * lo:5.1f}%, {100 * hi:5.1f}%]   ({r.n_items} neurons drawn; {r.items_not} not, "
                     f"{r.items_unsure} unsure or tied)")
    f = rep["fisher"]
    if f:
        lines.append(f"Fisher exact test {f['a']} vs {f['b']} on neurons (two-sided): odds ratio "
                     f"{_fmt(f['odds_ratio'])}, p = {f['p_value']:.4g}")
    else:
        lines.append("Fisher exact test: needs two models with ratings")
    f = rep.get("fisher_ln")
    if f:
        lines.append(f"The same SoLU-LN neurons before vs after the LayerNorm ({f['a']} vs {f['b']}), Fisher exact "
                     f"test (two-sided; the samples are paired, so this is conservative): p = {f['p_value']:.4g}")
    lines += ["", "Secondary: every rating pooled (each rater counted separately) and per rater:"]
    for r in rep["models"]:
        lines.append(f"  {r.name:<8} {r.interpretable:>4}/{r.n_ratings:<4} = {100 * r.share:5.1f}%  "
                     f"[{100 * r.ci_low:5.1f}%, {100 * r.ci_high:5.1f}%]   ({r.not_interpretable} not, "
                     f"{r.unsure} unsure)")
        for rater, (k, n) in r.per_rater.items():
            lines.append(f"      {rater}: {k}/{n}")
    fr = rep.get("fisher_ratings")
    if fr:
        lines.append(f"  Fisher exact test on pooled ratings (not independent when raters share items): "
                     f"p = {fr['p_value']:.4g}")
    lines.append("")
    a = rep["agreement"]
    if a["method"]:
        lines.append(f"Agreement between raters ({'Cohen' if a['method'] == 'cohen' else 'Fleiss'}'s kappa over "
                     f"{a['n_items']} items rated by all): {_fmt(a['kappa'])}")
    else:
        lines.append("Agreement between raters: needs two or more raters")
    lines.append("ROC AUC of automated scores predicting a neuron's majority verdict 'interpretable' "
                 "(unsure and tied neurons left out):")
    for s, d in rep["auc"].items():
        partly = d.get("n_scored", 0) != d["n_positive"] + d["n_negative"]
        lines.append(f"  {s:<18} {_fmt(d['auc'])}  ({d['n_positive']} interpretable, {d['n_negative']} not"
                     f"{', ' + str(d.get('n_scored')) + ' scored' if partly else ''})")
    if rep["median_seconds_per_item"] is not None:
        lines.append(f"Median time per rated item: {rep['median_seconds_per_item']:.1f} s")
    return "\n".join(lines) + "\n"


def report_rows(rep: dict) -> list[list]:
    rows = [["section", "name", "rater", "interpretable", "ratings", "share", "ci_low", "ci_high", "value"]]
    for r in rep["models"]:
        lo, hi = r.item_interval
        rows.append(["model_items", r.name, "majority", r.items_interpretable, r.items_rated,
                     r.item_share if r.items_rated else "", lo, hi, ""])
    for r in rep["models"]:
        rows.append(["model", r.name, "all", r.interpretable, r.n_ratings, r.share, r.ci_low, r.ci_high, ""])
        for rater, (k, n) in r.per_rater.items():
            lo, hi = wilson_interval(k, n)
            rows.append(["model", r.name, rater, k, n, k / n if n else "", lo, hi, ""])
    if rep["fisher"]:
        f = rep["fisher"]
        rows.append(["fisher_p", f"{f['a']} vs {f['b']}", "majority", "", "", "", "", "", f["p_value"]])
        rows.append(["fisher_odds_ratio", f"{f['a']} vs {f['b']}", "majority", "", "", "", "", "", f["odds_ratio"]])
    if rep.get("fisher_ratings"):
        f = rep["fisher_ratings"]
        rows.append(["fisher_p_ratings", f"{f['a']} vs {f['b']}", "all", "", "", "", "", "", f["p_value"]])
    a = rep["agreement"]
    rows.append([f"kappa_{a['method'] or 'none'}", "+".join(a["raters"]), "all", "", a["n_items"], "", "", "",
                 a["kappa"]])
    for s, d in rep["auc"].items():
        rows.append(["roc_auc", s, "majority", d["n_positive"], d["n_positive"] + d["n_negative"], "", "", "",
                     d["auc"]])
    return rows


def plot_report(rep: dict, path: str | os.PathLike) -> None:
    """A bar chart in the style of the paper's figure: share interpretable per model, Wilson bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = rep["models"]
    colors = {"GeLU": "#9fb9d6", "SoLU-LN": "#e9a66b"}
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=150)
    x = np.arange(len(res))
    shares = np.array([100 * r.item_share for r in res])
    iv = [r.item_interval for r in res]
    # clipped at 0: at a share of 0% or 100% a Wilson bound may differ from the share by a rounding error,
    # and matplotlib refuses a negative error bar
    err = np.clip(np.array([[100 * (r.item_share - lo) for r, (lo, _) in zip(res, iv)],
                            [100 * (hi - r.item_share) for r, (_, hi) in zip(res, iv)]]), 0, None)
    ax.bar(x, shares, width=0.6, color=[colors.get(r.name, "#b0b0b0") for r in res], edgecolor="none",
           yerr=err, capsize=4, error_kw={"elinewidth": 1, "ecolor": "#444444"})
    for xi, r in zip(x, res):
        ax.text(xi, 2, f"{r.items_interpretable}/{r.items_rated}", ha="center", va="bottom", fontsize=8,
                color="#333333")
    ax.set_xticks(x, [r.name for r in res])
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of neurons: interpretable (majority)")
    title = "Blinded rating of random neurons"
    if rep["fisher"]:
        title += f"\nFisher exact p = {rep['fisher']['p_value']:.3g}"
    ax.set_title(title, fontsize=9)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    ax.yaxis.grid(True, color="#e6e6e6")
    ax.set_axisbelow(True)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)  # never a half-written (0-byte) report.png, e.g. on a full disk
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StudyError(f"writing {path} failed ({e.strerror or e}); free some space (or choose another --out) and "
                         f"run `neurobrowse study report` again") from None
    finally:
        plt.close(fig)


def study_report(study: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """Compute the report and write report.txt, report.csv and report.png into ``out_dir``
    (default STUDY/report). Returns the report dict plus the written paths under "files"."""
    rep = compute_report(study)
    out = Path(out_dir) if out_dir is not None else Path(study) / "report"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "report.txt") as f:
        f.write(report_text(rep))
    with atomic_output(out / "report.csv", newline="") as f:
        csv.writer(f).writerows(report_rows(rep))
    plot_report(rep, out / "report.png")
    summary = report_summary(rep)
    summary["report"] = str((out / "report.json").absolute())
    with atomic_output(out / "report.json") as f:
        json.dump(summary, f, indent=1)
    _register(summary)
    rep["files"] = {k: str(out / f"report.{k}") for k in ("txt", "csv", "png", "json")}
    return rep


def report_summary(rep: dict) -> dict:
    """The per-item result of a report as plain JSON (report.json and the registry of reported studies)."""
    return {"kind": "neurobrowse-study-report", "study": str(Path(rep["study"]).absolute()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "raters": len(rep["raters"]),
            "models": [{"name": r.name, "act_fn": r.act_fn, "run_uuid": r.run_uuid, "hook_kind": r.hook_kind,
                        "items_rated": r.items_rated, "items_interpretable": r.items_interpretable}
                       for r in rep["models"] if r.hook_kind in ("", "hook_post")],
            "fisher_p": rep["fisher"]["p_value"] if rep["fisher"] else None,
            "auc": {k: (None if not math.isfinite(d["auc"]) else d["auc"]) for k, d in rep["auc"].items()}}


def _register(summary: dict) -> None:
    """Append a reported study to the registry (``registry_path``); a registry that cannot be written
    only loses the link from `compare` to this report (report.json stays in the study folder)."""
    path = registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary) + "\n")
    except OSError:
        pass


def reported_study(run_solu: str, run_other: str):
    """neurobrowse.verdict.StudyEvidence of the latest reported study of exactly these two recordings
    (by run UUID; its report.json must still exist), or None."""
    from neurobrowse.verdict import StudyEvidence, fisher_p

    path = registry_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            doc = json.loads(line)
            by_run = {m["run_uuid"]: m for m in doc["models"]}
        except (ValueError, KeyError, TypeError):
            continue
        if set(by_run) != {run_solu, run_other} or not Path(doc.get("report", "")).is_file():
            continue
        s, o = by_run[run_solu], by_run[run_other]
        k = (int(s["items_interpretable"]), int(o["items_interpretable"]))
        n = (int(s["items_rated"]), int(o["items_rated"]))
        return StudyEvidence(doc["study"], k, n, fisher_p(k[0], n[0], k[1], n[1]), int(doc.get("raters", 0)))
    return None
