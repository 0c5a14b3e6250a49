"""The sweep as a list of resumable steps (what `neurobrowse replicate` runs).

    corpus -> per size: train GeLU, SoLU-LN, SoLU (same data, seed, init) -> random control
           -> record + index the four (indexing while recording) -> one blinded study
           -> per size: GeLU at smaller MLP widths (the loss-vs-width curve) -> report

Every size's study comes before any of the width sweeps, so raters can start while the rest trains.
The output folder's layout: neurobrowse.replicate.folder.

A step's marker is written only after its output is whole, and every library underneath resumes on its
own (training from its last checkpoint, recording from the last chunk marker, indexing from its last
save), so a killed sweep continues where it stopped when the same command runs again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from neurobrowse.replicate.folder import (  # noqa: F401 - the folder's names, also read from here
    KIND, MANIFEST, STUDIED, TRAINED, VERSION, marker_path, model_name_for_width, read_manifest, size_dir,
)
from neurobrowse.replicate.presets import ReplicateError, SweepPreset, check_memory, get_preset, parse_sizes

STUDY_SEED = 21_000  # + n_layers: each size's study is drawn reproducibly


@dataclass
class ReplicateConfig:
    out: Path
    sizes: tuple[int, ...] = (1, 2, 4)
    preset: str = "small"
    device: str = "auto"
    per_model: int | None = None  # neurons per model per study (None: the preset's, 60)
    dense: str = "none"  # keep the dense activations ("keep") or not ("none")
    corpus: Path | None = None  # an existing corpus (None: build OUT/corpus from text on this machine)
    seed: int | None = None  # training seed (None: the preset's, 0)
    progress: bool | None = None  # inner progress bars (None: when stdout is a terminal)
    quiet: bool = False  # no step lines either


@dataclass
class Step:
    name: str  # e.g. "L2-train-solu_ln"; the marker file's name
    size: int | None
    kind: str  # corpus, train, control, record, study, width
    model: str | None
    run: Callable[[], dict]
    output: Path


@dataclass
class SweepResult:
    out: Path
    steps: list[dict] = field(default_factory=list)  # {name, status: done|skipped, seconds}


def _write_json(path: Path, doc: dict) -> None:
    from store.format import atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.output(path, error=ReplicateError) as f:
        json.dump(doc, f, indent=1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def settings_of(cfg: ReplicateConfig, p: SweepPreset) -> dict:
    """What makes the folder's results what they are (a rerun must match; sizes may be added)."""
    tc = p.train if cfg.seed is None else replace(p.train, seed=cfg.seed)
    return {"preset": cfg.preset, "model": p.model, "train": asdict(tc), "gelu_widths": list(p.gelu_widths),
            "n_tokens": p.n_tokens, "per_model": cfg.per_model or p.per_model, "dense": cfg.dense,
            "corpus": str(Path(cfg.corpus).resolve()) if cfg.corpus else None}


def prepare_out(cfg: ReplicateConfig, p: SweepPreset) -> dict:
    """Check the output folder and write (or extend) its manifest. Refuses, before writing anything, a
    folder that holds something else and one made with other settings."""
    out = Path(cfg.out)
    settings = settings_of(cfg, p)
    if out.exists() and not out.is_dir():
        raise ReplicateError(f"--out {out} is a file; name a folder (it is created)")
    if (out / MANIFEST).exists():
        doc = read_manifest(out)
        diff = [k for k in settings if doc.get("settings", {}).get(k) != settings[k]]
        if diff:
            raise ReplicateError(
                f"{out} holds a sweep made with other settings ({', '.join(diff)} differ: e.g. {diff[0]} "
                f"{doc.get('settings', {}).get(diff[0])!r} there, {settings[diff[0]]!r} now); rerun with the same "
                f"settings to continue it, or choose another --out (nothing was changed)")
        sizes = sorted(set(doc["sizes"]) | set(cfg.sizes))
        if sizes != doc["sizes"]:
            doc["sizes"] = sizes
            _write_json(out / MANIFEST, doc)
        return doc
    if out.is_dir() and any(out.iterdir()):
        raise ReplicateError(f"--out {out} already holds other files (no {MANIFEST}); choose an empty or new "
                             f"folder (nothing was changed)")
    doc = {"kind": KIND, "version": VERSION, "created": _now(), "sizes": list(cfg.sizes), "settings": settings,
           "command": " ".join(sys.argv) if sys.argv else None}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / MANIFEST, doc)
    return doc


def corpus_dir_of(out: Path, doc: dict) -> Path:
    c = doc["settings"].get("corpus")
    return Path(c) if c else Path(out) / "corpus"


# ---- the steps --------------------------------------------------------------------------------------
def plan_steps(cfg: ReplicateConfig, p: SweepPreset, doc: dict, inner: bool) -> list[Step]:
    out = Path(cfg.out).absolute()
    corpus = corpus_dir_of(out, doc)
    tc = p.train if cfg.seed is None else replace(p.train, seed=cfg.seed)
    steps: list[Step] = []
    if doc["settings"].get("corpus") is None:
        steps.append(Step("corpus", None, "corpus", None, lambda: _build_corpus(corpus, p, inner), corpus))

    def train(n: int, act: str, width: int, name: str) -> Step:
        dest = size_dir(out, n) / "models" / name
        return Step(f"L{n}-train-{name}", n, "train" if width == p.model["d_mlp"] else "width", name,
                    lambda: _train(corpus, dest, p, tc, n, act, width, cfg.preset, cfg.device, inner), dest)

    for n in cfg.sizes:
        models = size_dir(out, n) / "models"
        stores = size_dir(out, n) / "stores"
        for act in TRAINED:
            steps.append(train(n, act, p.model["d_mlp"], act))
        steps.append(Step(f"L{n}-control", n, "control", "control",
                          (lambda m=models: _control(m / "gelu", m / "control", cfg.device)), models / "control"))
        for name in STUDIED:
            steps.append(Step(f"L{n}-record-{name}", n, "record", name,
                              (lambda m=models / name, s=stores / name: _record(m, s, corpus, p, cfg, inner)),
                              stores / name))
        study = size_dir(out, n) / "study"
        steps.append(Step(f"L{n}-study", n, "study", None,
                          (lambda s=stores, st=study, n=n: _study(s, st, doc["settings"]["per_model"], n)), study))
    for n in cfg.sizes:
        for w in p.gelu_widths:
            steps.append(train(n, "gelu", w, model_name_for_width(w)))
    return steps


def _build_corpus(corpus: Path, p: SweepPreset, inner: bool) -> dict:
    from neurobrowse.demo import corpus_config_for
    from solu_core.corpus.build import build_corpus
    from solu_core.corpus.folder import read_manifest as corpus_manifest

    build_corpus(corpus, corpus_config_for(p.vocab_size, p.corpus_max_mb, p.include_prose), progress=inner)
    m = corpus_manifest(corpus)
    return {"bytes": m["counts"]["bytes"], "documents": m["counts"]["documents"]}


def _train(corpus: Path, dest: Path, p: SweepPreset, tc, n: int, act: str, width: int, preset: str, device: str,
           inner: bool) -> dict:
    from solu_core.checkpoint import read_config
    from solu_core.corpus.folder import read_manifest as corpus_manifest
    from solu_core.model import ModelConfig
    from solu_core.train import train_one

    vocab = corpus_manifest(corpus)["tokenizer"]["vocab_size"]
    mcfg = ModelConfig(**{**p.model, "d_mlp": width}, n_layers=n, d_vocab=vocab, act_fn=act)
    train_one(corpus, dest, mcfg, tc, preset=f"replicate-{preset}", device=device, progress=inner)
    m = read_config(dest)["metrics"]
    return {"val_loss": m["val_loss"], "train_wall_s": m["wall_s"], "tokens_per_s": m["tokens_per_s"],
            "device": m["device"], "threads": m.get("threads")}


def _control(trained: Path, dest: Path, device: str) -> dict:
    from neurobrowse.replicate.control import make_control
    from solu_core.checkpoint import read_config

    make_control(trained, dest, device=device)
    meta = read_config(dest)
    return {"val_loss": meta["metrics"]["val_loss"], "init": meta.get("init"), "control": meta.get("control")}


def _record(model: Path, store: Path, corpus: Path, p: SweepPreset, cfg: ReplicateConfig, inner: bool) -> dict:
    from solu_core.record import record
    from solu_core.record_config import CorpusText, RecordConfig
    from store.errors import StoreError
    from store.format.reader import Store

    try:
        st = Store.open(store)
        done = st.complete and all(st.is_indexed(h) for h in st.hooks)
    except StoreError:
        done = False
    if not done:
        record(model, store, RecordConfig(text=CorpusText(corpus), n_tokens=p.n_tokens, device=cfg.device,
                                          chunk_tokens=p.chunk_tokens, index=True, dense=cfg.dense == "keep"),
               progress=inner)
    st = Store.open(store)
    if not all(st.is_indexed(h) for h in st.hooks):  # only with kept dense activations: index them now
        from store.index import index_store

        index_store(store, progress=inner)
        st = Store.open(store)
    return {"tokens": int(st.n_tokens), "hooks": list(st.hooks), "run_uuid": st.run_uuid}


def _study(stores: Path, study: Path, per_model: int, n: int) -> dict:
    from neurobrowse.study.draw import StudyConfig, new_study

    if not (study / "study.json").exists():
        new_study([stores / m for m in STUDIED], study,
                  StudyConfig(per_model=per_model, seed=STUDY_SEED + n, per_layer=True))
    doc = json.loads((study / "study.json").read_text(encoding="utf-8"))
    return {"items": doc["n_items"], "study": str(study)}


# ---- running ----------------------------------------------------------------------------------------
def run_sweep(cfg: ReplicateConfig, *, on_step: Callable[[Step, dict], None] | None = None) -> SweepResult:
    """Run (or continue) the sweep; returns what each step did. Safe to kill and rerun."""
    p = get_preset(cfg.preset)
    cfg.sizes = parse_sizes(list(cfg.sizes)) if not isinstance(cfg.sizes, str) else parse_sizes(cfg.sizes)
    if cfg.dense not in ("keep", "none"):
        raise ReplicateError(f"--dense {cfg.dense!r}: use keep or none")
    per_model = cfg.per_model or p.per_model
    if per_model > p.model["d_mlp"]:
        raise ReplicateError(f"--per-model {per_model}: a {cfg.preset} model has only {p.model['d_mlp']} neurons "
                             f"per layer to draw from; give at most {p.model['d_mlp']}")
    if cfg.corpus is not None:
        from solu_core.corpus.folder import read_manifest as corpus_manifest
        from store.errors import CorpusError

        try:
            vocab = corpus_manifest(cfg.corpus)["tokenizer"]["vocab_size"]
        except (CorpusError, OSError, KeyError, ValueError) as e:
            raise ReplicateError(f"--corpus {cfg.corpus} is not a built corpus ({e}); build one with "
                                 f"`neurobrowse corpus --out DIR` or leave --corpus out") from None
    else:
        vocab = p.vocab_size
    check_memory(p, cfg.preset, cfg.sizes, vocab, cfg.device)  # before anything is written
    doc = prepare_out(cfg, p)
    inner = sys.stdout.isatty() if cfg.progress is None else cfg.progress
    out = Path(cfg.out).absolute()
    steps = plan_steps(cfg, p, doc, inner)
    result = SweepResult(out)
    total = len(steps)
    for i, step in enumerate(steps, 1):
        mk = marker_path(out, step.name)
        if mk.exists() and step.output.exists():
            rec = {"name": step.name, "status": "skipped", "seconds": 0.0}
            _say(cfg, f"{i}/{total} {step.name}: finished earlier, skipped")
        else:
            if inner:
                _say(cfg, f"{i}/{total} {step.name} ...")
            t = time.perf_counter()
            info = step.run()
            secs = time.perf_counter() - t
            _write_json(mk, {"name": step.name, "size": step.size, "kind": step.kind, "model": step.model,
                             "seconds": round(secs, 2), "finished": _now(), "info": info,
                             "output": str(step.output)})
            rec = {"name": step.name, "status": "done", "seconds": secs}
            _say(cfg, f"{i}/{total} {step.name}: done in {secs:.1f} s" + _brief(info))
        result.steps.append(rec)
        if on_step is not None:
            on_step(step, rec)
    from neurobrowse.replicate.report import write_report

    files = write_report(out)
    _say(cfg, f"report: {files['txt']} (rate the studies with `neurobrowse study rate STUDY`, then run "
              f"`neurobrowse replicate report {out}`)")
    return result


def _brief(info: dict) -> str:
    if "val_loss" in info and info["val_loss"] is not None:
        return f" (val loss {info['val_loss']:.4f})"
    if "items" in info:
        return f" ({info['items']} items: {info['study']})"
    return ""


def _say(cfg: ReplicateConfig, msg: str) -> None:
    if not cfg.quiet:
        print(f"[replicate] {msg}", flush=True)
