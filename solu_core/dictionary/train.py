"""Training a dictionary on a recorded hook (``train_dictionary``) and saving it inside the store in the
SAELens layout.

A fixed share of whole contexts is held out for the metrics. Each epoch reads the chunks in a seeded order,
a few at a time, and shuffles their rows; every step is a pure function of (seed, step), so training resumes
from its last saved state (every ``checkpoint_every_s`` seconds, and on Ctrl-C) and ends with the same
weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from solu_core.dictionary.config import DictionaryConfig, check_settings, default_lr, default_name
from solu_core.dictionary.metrics import evaluate
from solu_core.dictionary.rows import HookRows, Plan, check_hook, holdout_contexts
from solu_core.dictionary.sae import TopKSAE, folded_weights
from store import schema
from store.format import atomic
from store.format.dictionary import DictionaryError, load_dictionary, saelens_cfg, save_dictionary


def _state_dir(store_path: Path, fhook: str) -> Path:
    return Path(store_path) / schema.DICTIONARY_GROUP / schema.DICTIONARY_TRAIN / fhook


def _fingerprint(st, hook: str, cfg: DictionaryConfig) -> str:
    doc = {"run_uuid": st.run_uuid, "hook": hook, "cfg": cfg.key()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.writing(path, fsync=True) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def _load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a state torn by a kill mid-write is never renamed into place; anything else: start again
        return None


@dataclass
class TrainResult:
    feature_hook: str
    folder: Path
    metrics: dict
    steps: int
    resumed_at: int
    tokens_per_s: float
    skipped: bool = False


def train_dictionary(store, hook: str, *, width: float = 8.0, k: int = 32, name: str | None = None,
                     config: DictionaryConfig | None = None, model: str | None = None, device: str = "auto",
                     progress: bool = True, force: bool = False, stop_after_steps: int | None = None,
                     threads: int | None = None) -> TrainResult:
    """Train a TopK dictionary on ``hook`` of ``store`` (a path or a Store) and save it inside the store as
    the features ``{hook}.sae.{name}`` (default name e.g. ``8x-k32``). Resumes an interrupted run with the
    same settings; a finished dictionary of that name is kept unless ``force``. ``model``: the recorded
    model when the store's manifest does not find it (needed for a --dense none store; otherwise only for
    the loss-recovered metric). ``stop_after_steps``: stop (as if killed, after a save) once this many
    steps ran in all (tests). Returns the folder and the metrics."""
    from store.format.reader import as_store

    st = as_store(store)
    cfg = DictionaryConfig(**{**asdict(config or DictionaryConfig()), "width": float(width), "k": int(k)})
    check_hook(st, hook)
    d_sae = check_settings(int(st.d_mlp), cfg.width, cfg.k, cfg.batch_tokens, cfg.epochs)
    rows = HookRows(st, hook, model=model, device=device)
    name = name or default_name(cfg.width, cfg.k)
    try:
        fhook = schema.feature_hook_name(hook, name)
    except ValueError as e:
        raise DictionaryError(str(e)) from None
    folder = st.path / schema.dictionary_path(fhook)
    if folder.exists() and not force:
        d = load_dictionary(folder)
        return TrainResult(fhook, folder, d.meta.get("metrics", {}), int(d.meta.get("steps", 0)), 0,
                           float(d.meta.get("tokens_per_s", 0.0)), skipped=True)
    # a fixed thread count: the reduction order (and so every float) depends on it, and a resumed run must
    # end with the same weights as an uninterrupted one. Small dictionaries run faster on one thread.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(threads or (1 if rows.d_in * d_sae <= 2 ** 20 else (os.cpu_count() or 1))))
    try:
        return _train(st, hook, cfg, rows, name, fhook, folder, d_sae, device, progress, force, stop_after_steps)
    finally:
        torch.set_num_threads(threads_before)


def _train(st, hook, cfg, rows, name, fhook, folder, d_sae, device, progress, force, stop_after_steps):
    from solu_core.model import pick_device

    dev = pick_device(device)
    n_ctx_total = st.n_tokens // st.context_len
    held = holdout_contexts(n_ctx_total, cfg.holdout, cfg.seed)
    per_chunk_ctx = st.chunk_tokens // st.context_len
    train_rows = np.array([int((~held[c * per_chunk_ctx:c * per_chunk_ctx + rows.rows_of(c) // st.context_len]).sum())
                           * st.context_len for c in range(rows.n_chunks)], np.int64)
    if train_rows.sum() < cfg.k:
        raise DictionaryError(f"{hook} of {st.path} has only {int(train_rows.sum())} training tokens; record more")
    group = cfg.chunks_per_group or max(1, math.ceil(8 * cfg.batch_tokens / max(1, int(train_rows.max()))))
    plan = Plan(rows, cfg, held, train_rows, min(group, rows.n_chunks), d_sae)
    sched = plan.schedule()
    total = sum(b for _, _, b in sched)
    aux_k = cfg.aux_k or max(1, rows.d_in // 2)
    dead_tokens = cfg.dead_tokens or int(min(10_000_000, max(cfg.batch_tokens, train_rows.sum() // 4)))
    lr = cfg.lr or default_lr(d_sae)

    sdir = _state_dir(st.path, fhook)
    spath = sdir / "state.pt"
    fp = _fingerprint(st, hook, cfg)
    state = None if force else _load_state(spath)
    if state is not None and state.get("fingerprint") != fp:
        raise DictionaryError(f"an interrupted training of {fhook} with other settings is in {sdir}; rerun it with "
                              f"the same settings to resume it, or add --force to start again with these")
    sae = TopKSAE(rows.d_in, d_sae, cfg.k).to(dev)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, betas=(0.9, 0.999), eps=6.25e-10)
    if state is None:
        scale, mean = _input_stats(plan)
        gen = torch.Generator().manual_seed(int(cfg.seed))
        sae.init_weights(gen, torch.from_numpy(mean * scale))
        sae.to(dev)
        since = torch.zeros(d_sae, dtype=torch.int64)
        step0, spent = 0, 0.0
    else:
        sae.load_state_dict(state["sae"])
        opt.load_state_dict(state["opt"])
        scale, since = float(state["scale"]), state["since_fired"]
        step0, spent = int(state["step"]), float(state["spent_s"])
    since = since.to(dev)

    def save(step: int, spent_s: float) -> None:
        _save_state(spath, {"fingerprint": fp, "sae": sae.state_dict(), "opt": opt.state_dict(), "scale": scale,
                            "since_fired": since.cpu(), "step": step, "spent_s": spent_s, "total": total})

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / max(1, cfg.warmup_steps))
        decay_start = total * (1 - cfg.decay_frac)
        dec = 1.0 if s < decay_start else max(0.0, (total - s) / max(1.0, total - decay_start))
        return lr * warm * dec

    bar = None
    if progress:
        from store.progress import progress_bar

        bar = progress_bar(total=total, initial=step0, unit="step", desc=f"train {fhook}")
    step = 0
    t_run = time.perf_counter()
    last_save = time.monotonic()
    ran = 0
    pool = ThreadPoolExecutor(1, thread_name_prefix="neurobrowse-sae-read")

    def load_group(e: int, gi: int) -> torch.Tensor:
        chunks = plan.groups(e)[gi]
        parts = [plan.train_block(int(c), rows.chunk(int(c))) for c in chunks]
        x = np.concatenate(parts).astype(np.float32) * scale
        perm = np.random.default_rng([cfg.seed, 3, e, gi]).permutation(x.shape[0])
        return torch.from_numpy(x[perm])

    todo = []
    for e, gi, nb in sched:
        if step + nb > step0 and nb:
            todo.append((e, gi, nb, step))
        step += nb
    try:
        nxt = pool.submit(load_group, *todo[0][:2]) if todo else None
        for i, (_e, _gi, nb, first) in enumerate(todo):
            data = nxt.result()
            nxt = pool.submit(load_group, *todo[i + 1][:2]) if i + 1 < len(todo) else None
            B = min(cfg.batch_tokens, data.shape[0])
            for b in range(nb):
                s = first + b
                if s < step0:
                    continue
                x = data[b * B:(b + 1) * B].to(dev)
                for grp in opt.param_groups:
                    grp["lr"] = lr_at(s)
                dead = since >= dead_tokens
                loss, mse, aux, idx, vals = sae.step_losses(x, dead if bool(dead.any()) else None, aux_k, cfg.aux_coeff)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                sae.project_decoder_grad()
                opt.step()
                sae.normalize_decoder()
                with torch.no_grad():
                    fired = torch.zeros(d_sae, dtype=torch.bool, device=dev)
                    fired[idx[vals > 0]] = True
                    since += x.shape[0]
                    since[fired] = 0
                ran += 1
                if bar is not None:
                    el = time.perf_counter() - t_run
                    bar.update(1)
                    if ran % 5 == 0 or s + 1 == total:
                        var = float(x.var(0).sum())
                        bar.set_postfix_str(f"fvu {float(mse.detach()) / max(var, 1e-12):.3f}, dead {int(dead.sum())}, "
                                            f"{ran * B / el:,.0f} tok/s", refresh=False)
                done = s + 1
                if stop_after_steps is not None and done >= stop_after_steps and done < total:
                    save(done, spent + time.perf_counter() - t_run)
                    raise _Stopped(done)
                if time.monotonic() - last_save >= cfg.checkpoint_every_s and done < total:
                    save(done, spent + time.perf_counter() - t_run)
                    last_save = time.monotonic()
    except KeyboardInterrupt:
        cur = step0 + ran
        if 0 < ran:
            save(cur, spent + time.perf_counter() - t_run)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    train_s = spent + time.perf_counter() - t_run
    tokens_per_s = ran * cfg.batch_tokens / max(time.perf_counter() - t_run, 1e-9) if ran else 0.0
    weights = folded_weights(sae, scale)
    metrics, sparsity = evaluate(plan, weights, model=rows.loaded, device=dev, progress=progress)
    meta = {"source_hook": hook, "name": name, "feature_hook": fhook, "trained_here": True,
            "store_run_uuid": st.run_uuid, "config": asdict(cfg), "d_in": rows.d_in, "d_sae": d_sae, "lr": lr,
            "aux_k": aux_k, "dead_tokens": dead_tokens, "input_scale": scale, "steps": total,
            "train_tokens": int(total * cfg.batch_tokens), "train_s": train_s, "tokens_per_s": tokens_per_s,
            "device": str(dev), "from_model": rows.from_model, "metrics": metrics}
    cfg_json = saelens_cfg(rows.d_in, d_sae, cfg.k, hook, model_name=st.manifest.get("checkpoint_path"),
                           context_size=st.context_len, dataset_path=str(st.path))
    if folder.exists():  # --force over a dictionary: its features' index and logit effects describe the old one
        drop_feature_index(st.path, fhook)
    save_dictionary(folder, cfg_json, weights, meta, sparsity)
    shutil.rmtree(sdir, ignore_errors=True)
    return TrainResult(fhook, folder, metrics, total, step0, tokens_per_s)


def drop_feature_index(store_path, fhook: str) -> None:
    """Remove what indexing wrote for the features ``fhook`` (index, a rebuild in progress, logit effects), so
    that a retrained dictionary is never served with the index of the one it replaced. Called before the new
    folder is renamed into place: a kill in between leaves the old dictionary unindexed, never mismatched."""
    root = Path(store_path)
    for rel in (schema.index_path(fhook), schema.index_rebuild_path(fhook),
                schema.logit_path_for(fhook)):
        if (root / rel).exists():
            shutil.rmtree(root / rel)


class _Stopped(Exception):
    """train_dictionary(stop_after_steps=...) stopped after a save (behaves like a kill)."""

    def __init__(self, step: int):
        super().__init__(f"stopped after step {step}")
        self.step = step


def _input_stats(plan: Plan) -> tuple[float, np.ndarray]:
    """(scale, mean): the constant that makes E||x||^2 = d_in on the training rows (SAELens's
    expected_average_only_in normalisation, folded back into the saved weights), from up to 8 chunks spread
    over the store, and their mean row (the decoder bias's start)."""
    n = plan.rows.n_chunks
    picks = np.unique(np.linspace(0, n - 1, min(8, n)).astype(int))
    sq, tot, rows = 0.0, np.zeros(plan.rows.d_in, np.float64), 0
    for c in picks:
        a = plan.train_block(int(c), plan.rows.chunk(int(c))).astype(np.float64)
        sq += float((a ** 2).sum())
        tot += a.sum(0)
        rows += a.shape[0]
    msq = sq / max(rows, 1)
    scale = math.sqrt(plan.rows.d_in / msq) if msq > 0 else 1.0
    return scale, (tot / max(rows, 1)).astype(np.float32)
