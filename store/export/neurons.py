"""Export labeled neuron sets (JSONL, CSV, OpenAI neuron-explainer records) and read them back.

Why these formats: JSONL keeps everything (label, statistics, top snippets as token strings with
activations) one neuron per line, so files stream and diff well; CSV opens in a spreadsheet; the
``neuron-explainer`` format is OpenAI automated-interpretability's ``NeuronRecord`` so exported
neurons can be explained and scored by that tool.

Every export names the store's run UUID and the tool version; it is written to a temporary file
that is fsynced and renamed over the target, so a crash leaves the old file or the new one, never
half of one. Labels are read once, in one read transaction (``LabelDB.snapshot``), so an export
taken while others write labels is a consistent snapshot.

File layouts (``EXPORT_VERSION`` 1):

* ``jsonl``: line 1 is a header ``{"kind": "neurobrowse-export", "export_version", "format",
  "run_uuid", "tool_version", "created", "store", "filters", "n_neurons"}``; then one object per
  neuron ``{"run_uuid", "hook", "layer", "neuron", "label": {verdict, description, tags, notes,
  author, time, source} | null, "stats": {...}, "top": [{"position", "value", "center", "tokens":
  [str], "acts": [float]}]}``. Activations are rounded to 4 decimals (they are float16 on disk).
* ``csv``: one row per neuron with columns CSV_COLUMNS; tags and the top snippets are JSON text.
* ``neuron-explainer``: one NeuronRecord per line, exactly the fields of OpenAI's dataclasses
  (with their ``dataclass_name`` keys, so ``neuron_explainer.fast_dataclasses.loads`` reads a
  line), and a sidecar ``<out>.meta.json`` with the header (run UUID, tool version, hook). The
  automatic rule explanations (store.measures.explain) go to ``<out>.explanations.jsonl``: one
  NeuronSimulationResults per line, in the same neuron order, with the rule in words as its
  ScoredExplanation (nothing simulated: the ScoredSimulation is empty).
  ``random_sample_by_quantile`` holds our quantile bins in ascending order (0-0.5, 0.5-0.9,
  0.9-0.99, 0.99-0.999, 0.999-1) and ``quantile_boundaries`` the activations bounding them
  ``[min, q0.5, q0.9, q0.99, q0.999, max]``; ``random_sample`` is the uniformly random bin.
  NeuronRecord has no hook field, so one export holds one hook kind (default hook_post).

``labels export`` writes the jsonl layout without statistics and snippets (``kind:
"neurobrowse-labels"``); ``read_label_file`` reads all three label-carrying layouts back.
"""

from __future__ import annotations

import csv
import gzip as gzip_mod
import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
import numpy as np
from store.measures import columns
from store import schema
from store.errors import NeurobrowseError
from store.format import atomic
from store.labels.label import Label, check_verdict, normalize_tags
from store.labels.db import LabelDB
from store.measures.snippets import build_snippets, distinct_names, has_distinct, index_window
from store.measures.tokens_display import raw_piece


EXPORT_VERSION = 1


FORMATS = ("jsonl", "csv", "neuron-explainer")


EXPORT_KIND = "neurobrowse-export"


LABELS_KIND = "neurobrowse-labels"


LABEL_FIELDS = ("verdict", "description", "tags", "notes", "author", "time", "source")


STAT_FIELDS = columns.STATISTICS


CSV_COLUMNS = ("run_uuid", "tool_version", "hook", "layer", "neuron", *LABEL_FIELDS, *STAT_FIELDS,
               "top_firing_tokens", "top_snippets")




ACT_DECIMALS = 4  # activations are float16 on disk: 4 decimals keep what matters at a third of the size


class ExportError(NeurobrowseError):
    """An export that cannot be written (bad filter, disk full, unindexed hook); the old file is kept."""


@dataclass
class ExportConfig:
    """What to export. A neuron is exported when it passes every given filter."""

    fmt: str = "jsonl"  # one of FORMATS
    hooks: list[str] | None = None  # full hook names; None: every indexed hook (neuron-explainer: hook_post)
    verdicts: list[str] | None = None  # keep labels with one of these verdicts
    tags: list[str] | None = None  # keep labels with any of these tags
    layers: list[int] | None = None  # keep these layers
    min_scores: dict[str, float] = field(default_factory=dict)  # neuron-table column -> minimum value
    neurons: dict[str, list[int]] | None = None  # exactly these neurons per hook (the app's "export this neuron /
    #                                              the rows shown"); the other filters are then not applied
    all_neurons: bool = False  # also export unlabeled neurons (default: labeled neurons only)
    snippets: int = 20  # top snippets per neuron
    gzip: bool = False  # gzip the output (also detected on import)
    block: int = 512  # neurons read from the index per batch (bounds memory)


def tool_version_default() -> str:
    """The installed neurobrowse version (store may not import the app package, so ask metadata)."""
    try:
        from importlib.metadata import version

        return version("neurobrowse")
    except Exception:  # not installed as a distribution
        return "unknown"


# ---- atomic files ----------------------------------------------------------------------------------
DB_SIDE_FILES = ("", "-wal", "-shm", "-journal")  # SQLite's files of a database


def check_output_path(out: str | os.PathLike, labels_db: LabelDB | None = None) -> Path:
    """``out`` as a Path, or an ExportError when writing there would destroy data: the label database
    (or one of its -wal / -shm / -journal files), anything inside a Zarr store, or an existing folder."""
    p = Path(out).expanduser()
    resolved = p.resolve()
    if resolved.is_dir():
        raise ExportError(f"--out {p} is a folder; name a file (e.g. {p / 'export.jsonl'})")
    if labels_db is not None:
        db = Path(labels_db.path).expanduser().resolve()
        for side in DB_SIDE_FILES:
            if resolved == db.with_name(db.name + side):
                raise ExportError(f"--out {p} is the label database {db}{' (its ' + side + ' file)' if side else ''}: "
                                  f"writing there would destroy every label and its history; choose another file")
    if os.path.lexists(resolved) and not resolved.is_file():  # a device, FIFO or socket: never replaced by a file
        raise ExportError(f"--out {p} is not a regular file (a device, FIFO or socket); name a regular file")
    for folder in resolved.parents:
        if (folder / "zarr.json").is_file():
            raise ExportError(f"--out {p} is inside the Zarr store {folder}: writing there would damage it; "
                              f"choose a file outside the store")
    if resolved.suffix in PROTECTED_SUFFIXES and resolved.exists():
        raise ExportError(f"--out {p} is a model's weights ({resolved.suffix}); writing there would destroy them; "
                          "choose another file")
    for marker, what in PROTECTED_FOLDERS.items():
        if (resolved.parent / marker).is_file():
            raise ExportError(f"--out {p} is inside {what} {resolved.parent} (it holds {marker}): writing there could "
                              f"destroy its files; choose a file outside it")
    return p


PROTECTED_SUFFIXES = (".safetensors", ".pt", ".ckpt")  # weights, never overwritten by an export
PROTECTED_FOLDERS = {"study.json": "the study", "model.safetensors": "the checkpoint",
                     "ratings.sqlite": "the study"}  # a file here marks a folder whose files an export must not touch


def atomic_output(path: str | os.PathLike, **kw) -> Any:
    """``store.format.atomic.output`` with an ExportError naming ``path`` when writing fails."""
    return atomic.output(path, error=ExportError, **kw)


def _open_maybe_gzip(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip_mod.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


# ---- selection -------------------------------------------------------------------------------------
def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _label_dict(lab: Label | None) -> dict | None:
    if lab is None:
        return None
    return {"verdict": lab.verdict, "description": lab.description, "tags": list(lab.tags), "notes": lab.notes,
            "author": lab.author, "time": lab.time, "source": lab.source}


def default_hooks(store: Any, fmt: str) -> list[str]:
    hooks = [h for h in store.hooks if store.is_indexed(h)]
    if fmt == "neuron-explainer":
        hooks = [h for h in hooks if schema.parse_hook_name(h)[1] == "hook_post"] or hooks[:1]
    return hooks


def select_neurons(store: Any, cfg: ExportConfig, labels: dict[tuple[str, int], Label]) -> dict[str, np.ndarray]:
    """{hook: sorted neuron ids} passing cfg's filters, given the labels snapshot."""
    if cfg.fmt not in FORMATS:
        raise ExportError(f"unknown export format {cfg.fmt!r}; use one of {', '.join(FORMATS)}")
    if cfg.neurons is not None:
        out = {}
        for hook, ns in cfg.neurons.items():
            if hook not in store.hooks or not store.is_indexed(hook):
                raise ExportError(f"{store.path}: hook {hook!r} is not an indexed hook; run `neurobrowse index "
                                  f"{store.path}`")
            ns = np.unique(np.asarray(list(ns), dtype=np.int64))
            if ns.size and (ns[0] < 0 or ns[-1] >= store.d_mlp):
                raise ExportError(f"neuron {int(ns[-1] if ns[-1] >= store.d_mlp else ns[0])} does not exist in "
                                  f"{hook} (neurons 0-{store.d_mlp - 1})")
            out[hook] = ns
        return out
    for v in cfg.verdicts or ():
        check_verdict(v)
    hooks = cfg.hooks or default_hooks(store, cfg.fmt)
    if not hooks:
        raise ExportError(f"{store.path} has no indexed hook to export; run `neurobrowse index {store.path}`")
    if cfg.fmt == "neuron-explainer" and len({schema.parse_hook_name(h)[1] for h in hooks}) > 1:
        raise ExportError("a neuron-explainer export holds one hook kind (NeuronRecord has no hook field); "
                          "pass --hook with hook_post or hook_mid hooks only")
    want_tags = set(normalize_tags(cfg.tags)) if cfg.tags else None
    missing_layers = sorted(set(cfg.layers or ()) - {schema.parse_hook_name(h)[0] for h in hooks})
    if missing_layers:
        raise ExportError(f"--layer {', '.join(map(str, missing_layers))}: {store.path} has no such layer among the "
                          f"exported hooks ({', '.join(hooks)})")
    for name, lo in (cfg.min_scores or {}).items():
        if not math.isfinite(float(lo)):
            raise ExportError(f"--min-score {name}={lo}: the threshold must be a finite number")
    out = {}
    for hook in hooks:
        if hook not in store.hooks:
            raise ExportError(f"{store.path} has no hook {hook!r}; recorded hooks: {', '.join(store.hooks)}")
        if not store.is_indexed(hook):
            raise ExportError(f"{store.path}: hook {hook!r} is not indexed; run `neurobrowse index {store.path}`")
        layer = schema.parse_hook_name(hook)[0]
        if cfg.layers is not None and layer not in cfg.layers:
            continue
        keep = np.ones(store.n_units(hook), dtype=bool)
        if cfg.min_scores:
            table = store.neuron_table(hook)
            for name, lo in cfg.min_scores.items():
                if name not in table or name in ("neuron", "top_token"):
                    raise ExportError(f"--min-score: {name!r} is not a numeric neuron statistic; use one of "
                                      f"{', '.join(k for k in table if k not in ('neuron', 'top_token'))}")
                col = np.asarray(table[name], dtype=np.float64)
                keep &= np.nan_to_num(col, nan=-np.inf) >= float(lo)
        labeled = np.zeros(store.n_units(hook), dtype=bool)
        for (h, n), lab in labels.items():
            if h != hook or not 0 <= n < store.n_units(hook):
                continue
            if cfg.verdicts and lab.verdict not in cfg.verdicts:
                continue
            if want_tags is not None and not want_tags & set(lab.tags):
                continue
            labeled[n] = True
        if cfg.verdicts or want_tags is not None or not cfg.all_neurons:
            keep &= labeled
        out[hook] = np.flatnonzero(keep)
    return out


# ---- reading index blocks --------------------------------------------------------------------------
class _Vocab:
    """Readable token strings as one object array, so a block of windows converts in one indexing."""

    def __init__(self, store: Any):
        n = int(store.model_config.get("d_vocab") or 0)
        self.store = store
        # raw token strings (real newlines and tabs, as other tools read them); [vocab + 1]; last: padding
        self.array = np.array([raw_piece(t) for t in store.token_strings(np.arange(n))] + [""], dtype=object)

    def strings(self, ids: np.ndarray) -> np.ndarray:
        """object array shaped like ``ids``; -1 (padding) -> ''."""
        ids = np.asarray(ids, dtype=np.int64)
        n = len(self.array) - 1
        if ids.size and ids.max() >= n:  # a token id beyond d_vocab: ask the store one by one
            return np.array([raw_piece(t) for t in self.store.token_strings(ids.ravel())],
                            dtype=object).reshape(ids.shape)
        return self.array[np.where(ids >= 0, ids, n)]


class _Windows:
    """Context windows of one kind (top snippets or one sample bin) for a block of neurons, made into
    snippets by store.measures.snippets (the same choice as the app's): only the tokens the model saw."""

    def __init__(self, vocab: _Vocab, positions: np.ndarray, values: np.ndarray | None, tokens: np.ndarray,
                 acts: np.ndarray, *, before: int, context_len: int, more: np.ndarray | None = None,
                 distinct: bool = False, limit: int | None = None):
        # positions [n, m], values [n, m] | None, tokens / acts [n, m, W], more [n, m] | None
        self.positions = positions
        self.values = values
        self.tokens = tokens
        self.acts = acts
        self.strings = vocab.strings(tokens)  # [n, m, W] object
        self.before, self.context_len, self.more, self.distinct, self.limit = before, context_len, more, distinct, limit

    def snippets(self, i: int) -> list[dict]:
        values = self.values[i] if self.values is not None else np.zeros(self.positions.shape[1], np.float32)
        snips = build_snippets(self.positions[i], values, self.tokens[i], self.acts[i], self.strings[i],
                               before=self.before, context_len=self.context_len,
                               more=None if self.more is None else self.more[i], distinct=self.distinct)
        out = []
        for s in snips[:self.limit]:
            lo, hi = s.crop()
            d = {"position": s.position}
            if self.values is not None:
                d["value"] = float(np.round(np.float64(s.value), 5))
            d.update(center=s.center - lo, tokens=s.tokens[lo:hi],
                     acts=np.round(s.acts[lo:hi].astype(np.float64), ACT_DECIMALS).tolist())
            if self.distinct:
                d["more"] = s.more  # further firings in this context (store.measures.snippets.MORE_SHARE)
            out.append(d)
        return out


class _Block:
    """Index arrays of a set of neurons of one hook, read in one orthogonal selection each."""

    def __init__(self, store: Any, vocab: _Vocab, hook: str, neurons: np.ndarray, k: int, fmt: str):
        self.neurons = neurons
        idx = neurons.astype(np.int64)

        def rows(name: str, extra: tuple = ()) -> np.ndarray:
            arr = store.index_array(hook, name)
            sel = (idx,) + extra + (slice(None),) * (arr.ndim - 1 - len(extra))
            return np.asarray(arr.get_orthogonal_selection(sel))

        attrs = store.index_state(hook)
        before, _after = index_window(attrs)
        ctx = {"before": before, "context_len": store.context_len}
        nm = distinct_names("top")
        if has_distinct(attrs):
            self.top = _Windows(vocab, rows(nm["d_positions"]), rows(nm["d_values"]), rows(nm["d_tokens"]),
                                rows(nm["d_acts"]), more=rows(nm["d_more"]), distinct=True, limit=k, **ctx)
        else:
            self.top = _Windows(vocab, rows(nm["positions"]), rows(nm["values"]), rows(nm["tokens"]),
                                rows(nm["acts"]), distinct=True, limit=k, **ctx)
        self.bins: list[_Windows] = []
        if fmt == "neuron-explainer":
            pos = rows("sample_positions")  # [n, B, S]
            toks = rows("sample_context_tokens")  # [n, B, S, W]
            acts = rows("sample_context_acts")  # [n, B, S, W]
            self.bins = [_Windows(vocab, pos[:, b], None, toks[:, b], acts[:, b], **ctx) for b in range(pos.shape[1])]
            self.quantile_edges = rows("quantile_edges")  # [n, 4]


def _stats(table: dict[str, np.ndarray], n: int) -> dict:
    out = {}
    for k in STAT_FIELDS:
        v = table[k][n]
        out[k] = _finite(float(v)) if columns.BY_NAME[k].numeric else str(v)
    return out


def _activation_record(snip: dict) -> dict:
    return {"dataclass_name": "ActivationRecord", "tokens": snip["tokens"], "activations": snip["acts"]}


def _neuron_record(layer: int, n: int, stats: dict, top: list[dict], samples: list[list[dict]],
                   edges: np.ndarray) -> dict:
    # samples: SAMPLE_BINS order ("0.999-1", ..., "0-0.5", "random"); NeuronRecord wants ascending
    by_bin = dict(zip(schema.SAMPLE_BINS, samples))
    ascending = [b for b in reversed(schema.SAMPLE_BINS) if b != "random"]
    bounds = [stats["min_act"], *[_finite(float(e)) for e in edges], stats["max_act"]]
    return {
        "dataclass_name": "NeuronRecord",
        "neuron_id": {"dataclass_name": "NeuronId", "layer_index": layer, "neuron_index": int(n)},
        "random_sample": [_activation_record(s) for s in by_bin.get("random", [])],
        "random_sample_by_quantile": [[_activation_record(s) for s in by_bin[b]] for b in ascending],
        "quantile_boundaries": bounds,
        "mean": stats["mean"],
        "variance": stats["var"],
        "skewness": stats["skewness"],
        "kurtosis": stats["kurtosis"],
        "most_positive_activation_records": [_activation_record(s) for s in top],
    }


def _explanation_record(layer: int, n: int, stats: dict) -> dict:
    """The neuron's rule explanation (store.measures.explain) as neuron-explainer's NeuronSimulationResults with one
    ScoredExplanation. Nothing was simulated, so the ScoredSimulation is empty; the explanation's
    coverage, precision and score are in its words and in our jsonl / csv exports."""
    scored = {"dataclass_name": "ScoredSimulation", "scored_sequence_simulations": [], "ev_correlation_score": None,
              "rsquared_score": None, "absolute_dev_explained_score": None}
    expl = [{"dataclass_name": "ScoredExplanation", "explanation": stats.get("explanation") or "",
             "scored_simulation": scored}] if stats.get("explanation") else []
    return {"dataclass_name": "NeuronSimulationResults",
            "neuron_id": {"dataclass_name": "NeuronId", "layer_index": layer, "neuron_index": int(n)},
            "scored_explanations": expl}


def _csv_row(header: dict, rec: dict) -> list:
    lab = rec["label"] or {}
    row = [rec["run_uuid"], header["tool_version"], rec["hook"], rec["layer"], rec["neuron"]]
    for k in LABEL_FIELDS:
        v = lab.get(k, "" if k != "verdict" else "")
        row.append(json.dumps(v, ensure_ascii=False) if k == "tags" else ("" if v is None else v))
    for k in STAT_FIELDS:
        v = rec["stats"].get(k)
        row.append("" if v is None else v)
    row.append("|".join(s["tokens"][s["center"]] if s["tokens"] else "" for s in rec["top"]))
    row.append(json.dumps(rec["top"], ensure_ascii=False, separators=(",", ":")))
    return row


def iter_records(store: Any, selection: dict[str, np.ndarray], labels: dict[tuple[str, int], Label],
                 cfg: ExportConfig, progress: bool = False) -> Iterator[tuple[str, dict]]:
    """Yield (kind, record) per selected neuron: kind "neuron" (our layout) or "neuron-explainer"."""
    total = sum(len(v) for v in selection.values())
    vocab = _Vocab(store)
    bar = None
    if progress:
        from store.progress import progress_bar

        bar = progress_bar(total=total, desc="export", unit="neuron")
    try:
        for hook, neurons in selection.items():
            layer = schema.parse_hook_name(hook)[0]
            table = store.neuron_table(hook)
            k = cfg.snippets
            for start in range(0, len(neurons), cfg.block):
                part = neurons[start:start + cfg.block]
                blk = _Block(store, vocab, hook, part, k, cfg.fmt)
                for i, n in enumerate(part.tolist()):
                    stats = _stats(table, n)
                    top = blk.top.snippets(i)
                    if cfg.fmt == "neuron-explainer":
                        samples = [w.snippets(i) for w in blk.bins]
                        rec = _neuron_record(layer, n, stats, top, samples, blk.quantile_edges[i])
                        rec["_explanation"] = _explanation_record(layer, n, stats)  # for the sidecar
                        yield "neuron-explainer", rec
                    else:
                        yield "neuron", {"run_uuid": store.run_uuid, "hook": hook, "layer": layer, "neuron": n,
                                         "label": _label_dict(labels.get((hook, n))), "stats": stats, "top": top}
                if bar is not None:
                    bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()


def export_store(store: Any, out: str | os.PathLike, cfg: ExportConfig, *, labels_db: LabelDB | None = None,
                 tool_version: str | None = None, progress: bool = False) -> dict:
    """Export the selected neurons of ``store`` (a store.format.reader.Store) to ``out``, atomically.
    Returns a summary {path, format, run_uuid, n_neurons, bytes}."""
    out = check_output_path(out, labels_db)
    if cfg.fmt == "neuron-explainer":
        check_output_path(out.with_name(out.name + ".meta.json"), labels_db)
    labels = labels_db.snapshot(store.run_uuid) if labels_db is not None else {}
    selection = select_neurons(store, cfg, labels)
    n_total = int(sum(len(v) for v in selection.values()))
    header = {
        "kind": EXPORT_KIND, "export_version": EXPORT_VERSION, "format": cfg.fmt, "run_uuid": store.run_uuid,
        "tool_version": tool_version or tool_version_default(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": str(store.path), "act_fn": store.model_config.get("act_fn"), "hooks": list(selection),
        "filters": {"neurons": {h: [int(n) for n in v] for h, v in cfg.neurons.items()} if cfg.neurons else None,
                    "verdicts": cfg.verdicts, "tags": cfg.tags, "layers": cfg.layers,
                    "min_scores": cfg.min_scores, "all_neurons": cfg.all_neurons, "snippets": cfg.snippets},
        "n_neurons": n_total,
    }
    records = iter_records(store, selection, labels, cfg, progress=progress)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    if cfg.fmt == "csv":
        with atomic_output(out, gzip=cfg.gzip, newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for _, rec in records:
                w.writerow(_csv_row(header, rec))
    elif cfg.fmt == "jsonl":
        with atomic_output(out, gzip=cfg.gzip) as f:
            f.write(dumps(header) + "\n")
            for _, rec in records:
                f.write(dumps(rec) + "\n")
    else:  # neuron-explainer: NeuronRecords, and their explanations in a sidecar
        with atomic_output(out, gzip=cfg.gzip) as f, \
                atomic_output(out.with_name(out.name + ".explanations.jsonl")) as fe:
            for _, rec in records:
                fe.write(dumps(rec.pop("_explanation")) + "\n")
                f.write(dumps(rec) + "\n")
        with atomic_output(out.with_name(out.name + ".meta.json")) as f:  # run UUID, tool version and hook
            f.write(json.dumps(header, indent=1) + "\n")
    return {"path": str(out), "format": cfg.fmt, "run_uuid": store.run_uuid, "n_neurons": n_total,
            "bytes": out.stat().st_size}
