"""Train a fair pair of models: GeLU and SoLU-LN (plain SoLU on request) on one corpus.

Fair means: the same corpus and tokenizer, the same initial weights (one seed; the SoLU-LN's extra
LayerNorm starts at identity and draws no random numbers), the same batches in the same order
(batch ``s`` is a pure function of ``(seed, s)``), the same optimizer and schedule. Only the
activation differs.

Training is AdamW with linear warm-up and cosine decay, gradient clipping, bf16 autocast on CUDA.
Checkpoints are written every ``ckpt_every`` steps (and on Ctrl-C) with the optimizer state beside
the weights; running the same command again resumes from the last one. A finished model is skipped.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from solu_core.corpus.folder import corpus_manifest_hash, load_split, read_manifest
from solu_core.checkpoint import TRAIN_STATE, load_checkpoint, read_config, recover_checkpoint_dir, save_checkpoint
from solu_core.model import ACT_FNS, ModelConfig, Transformer, param_count, pick_device
from solu_core.presets import PRESETS, Preset, TrainConfig, TrainConfigError, get_preset  # noqa: F401 (re-exported)
from store.errors import CheckpointError


def parse_act_fns(act_fns) -> tuple[str, ...]:
    """'gelu,solu_ln' or a sequence -> a checked tuple (order kept, duplicates dropped)."""
    names = act_fns.split(",") if isinstance(act_fns, str) else list(act_fns)
    names = [n.strip().replace("-", "_") for n in names if n.strip()]
    bad = [n for n in names if n not in ACT_FNS]
    if bad or not names:
        raise TrainConfigError(f"unknown act_fn {', '.join(bad) or '(none)'}; choose from {', '.join(ACT_FNS)}")
    return tuple(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------- helpers


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up to tc.lr, then cosine decay to tc.lr * tc.min_lr_frac at tc.steps."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    progress = min(1.0, (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps))
    return tc.lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_at(tokens: np.ndarray, step: int, seed: int, batch_size: int, n_ctx: int) -> torch.Tensor:
    """The batch for one step: random windows of n_ctx + 1 tokens, a pure function of (seed, step),
    so every model of a pair (and a resumed run) sees exactly the same data in the same order."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - n_ctx - 1, size=batch_size)  # [batch]
    idx = starts[:, None] + np.arange(n_ctx + 1)  # [batch, n_ctx + 1]
    return torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))


def val_windows(tokens: np.ndarray, n_ctx: int, max_tokens: int) -> torch.Tensor:
    """Consecutive non-overlapping windows from the start of the val split: [n_windows, n_ctx + 1]."""
    n = min(len(tokens), max_tokens) // (n_ctx + 1)
    if n == 0:
        raise TrainConfigError(
            f"the validation split has {len(tokens)} tokens, fewer than one context of {n_ctx + 1}; "
            "build the corpus with more text or a larger --val-fraction"
        )
    return torch.from_numpy(np.asarray(tokens[: n * (n_ctx + 1)], dtype=np.int64).reshape(n, n_ctx + 1))


@torch.no_grad()
def evaluate(model: Transformer, windows: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean next-token loss (nats/token) over the windows."""
    model.eval()
    total, count = 0.0, 0
    for b in range(0, len(windows), batch_size):
        x = windows[b : b + batch_size].to(device)
        with _autocast(device):
            loss = model.loss(x)
        n = x.shape[0] * (x.shape[1] - 1)
        total += float(loss) * n
        count += n
    model.train()
    return total / count


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


DEFAULT_THREADS = 1  # CPU threads when --threads is not given: fixed, so a rerun gives the same weights


def _set_threads(device: torch.device, threads: int | None = None) -> int:
    """Set the CPU thread count: ``threads`` when given, else DEFAULT_THREADS (1). Fixed rather than
    picked from the cores or the load: the thread count changes the order of floating-point reductions,
    so two runs with different counts give different weights (a load-dependent default made a rerun on
    a busy machine differ). One thread also avoids torch's spinning OpenMP threads on a shared machine
    (2 contended threads ran a small model 6x slower than 1). ``--threads N`` trades that for speed; the
    count used is saved in the checkpoint (metrics.threads). Returns it."""
    if device.type != "cpu":
        return torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads) if threads is not None else DEFAULT_THREADS))
    return torch.get_num_threads()


def _same_training(a: dict | None, b: dict) -> bool:
    """Equal apart from settings that do not change the weights (how often to checkpoint)."""
    drop = ("ckpt_every",)
    def kept(d):
        return {k: v for k, v in d.items() if k not in drop}
    return a is not None and kept(a) == kept(b)


def make_optimizer(model: Transformer, tc: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters()
             if n.split(".")[-1].startswith("W_") and n not in ("embed.W_E", "pos_embed.W_pos")]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=tc.lr, betas=(tc.beta1, tc.beta2),
    )


# ----------------------------------------------------------------------------------------- training


def _begin(out_dir, corpus_dir, preset: str, tc: TrainConfig, device: str, threads: int | None) -> tuple:
    """What a training run and a control start from: (out folder, corpus folder, the corpus manifest's hash,
    its tokenizer's JSON, the training settings as recorded, the device, the threads in use)."""
    out = Path(out_dir).expanduser().resolve()
    corpus_dir = Path(corpus_dir).expanduser().resolve()
    manifest_hash = corpus_manifest_hash(corpus_dir)
    tokenizer_json = (corpus_dir / "tokenizer.json").read_text(encoding="utf-8")
    training = {"preset": preset, **asdict(tc)}
    dev = pick_device(device)
    return out, corpus_dir, manifest_hash, tokenizer_json, training, dev, _set_threads(dev, threads)


def train_one(
    corpus_dir: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    tc: TrainConfig,
    *,
    preset: str = "custom",
    device: str = "auto",
    progress: bool = True,
    force: bool = False,
    threads: int | None = None,
) -> Path:
    """Train one model into checkpoint directory ``out_dir``, resuming from it when it holds an
    unfinished run with the same settings. Returns ``out_dir``."""
    from store.progress import progress_bar

    out, corpus_dir, manifest_hash, tokenizer_json, training, dev, n_threads = _begin(
        out_dir, corpus_dir, preset, tc, device, threads)

    recover_checkpoint_dir(out)
    if force and out.exists():
        shutil.rmtree(out)
    model = opt = None
    step, wall, history, tokens_seen, resumes = 0, 0.0, [], 0, []
    if out.exists():
        meta = read_config(out)
        mismatch = [
            what for what, same in (
                ("model config", ModelConfig.from_dict(meta).to_dict() == model_cfg.to_dict()),
                ("training config", _same_training(meta.get("training"), training)),
                ("corpus", meta.get("corpus_manifest_hash") == manifest_hash),
            ) if not same
        ]
        if mismatch:
            raise CheckpointError(
                f"{out} holds a checkpoint with another {' and '.join(mismatch)}; "
                "pass --force to retrain it or choose another --out"
            )
        if meta.get("complete"):
            return out
        state_path = out / TRAIN_STATE
        if not state_path.exists():
            raise CheckpointError(f"{state_path} is missing, so {out} cannot be resumed; pass --force to retrain it")
        ck = load_checkpoint(out, device=str(dev))
        model = ck.model.train()
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{state_path} is corrupt or truncated ({e}); pass --force to retrain") from e
        opt = make_optimizer(model, tc)
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, wall, tokens_seen = int(state["step"]), float(state["wall_s"]), int(state["tokens_seen"])
        history = meta.get("history", [])
        resumes = meta.get("resumed_at", []) + [step]

    train = load_split(corpus_dir, "train")
    val = val_windows(load_split(corpus_dir, "val").tokens, model_cfg.n_ctx, tc.eval_tokens * 4)
    if len(train) < model_cfg.n_ctx + 2:
        raise TrainConfigError(f"the train split of {corpus_dir} has only {len(train)} tokens; build a larger corpus")
    if model is None:
        torch.manual_seed(tc.seed)
        model = Transformer(model_cfg).to(dev).train()
        opt = make_optimizer(model, tc)

    def meta_now(complete: bool, val_loss: float | None) -> dict:
        return {
            "preset": preset,
            "init": "trained",
            "training": training,
            "corpus_manifest_hash": manifest_hash,
            "corpus_dir": str(corpus_dir),
            "n_params": param_count(model),
            "history": history,
            "resumed_at": resumes,  # steps at which a killed or interrupted run was resumed
            "metrics": {
                "step": step,
                "tokens_seen": tokens_seen,
                "train_loss": history[-1]["train_loss"] if history else None,
                "val_loss": val_loss if val_loss is not None else (history[-1]["val_loss"] if history else None),
                "val_tokens": int(val.shape[0] * (val.shape[1] - 1)) if complete else None,
                "wall_s": round(wall, 2),
                "tokens_per_s": round(tokens_seen / wall, 1) if wall else None,
                "device": dev.type,
                "threads": n_threads,
            },
            "complete": complete,
        }

    def checkpoint(complete: bool, val_loss: float | None = None) -> None:
        state = None if complete else {
            "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "step": step,
            "wall_s": wall, "tokens_seen": tokens_seen,
        }
        save_checkpoint(out, model, tokenizer_json, meta_now(complete, val_loss), train_state=state)

    eval_small = val[: max(1, tc.eval_tokens // model_cfg.n_ctx)]
    bar = progress_bar(total=tc.steps, initial=step, desc=f"train {model_cfg.act_fn}", unit="step", enabled=progress)
    running = None
    try:
        while step < tc.steps:
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tc)
            x = batch_at(train.tokens, step, tc.seed, tc.batch_size, model_cfg.n_ctx).to(dev)
            with _autocast(dev):
                loss = model.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            lv = loss.item()  # also waits for an asynchronous (CUDA) step, so `wall` is true
            step += 1
            tokens_seen += x.numel() - x.shape[0]
            wall += time.perf_counter() - t0
            running = lv if running is None else 0.95 * running + 0.05 * lv
            if step % tc.eval_every == 0 or step == tc.steps:
                history.append({"step": step, "train_loss": round(running, 4),
                                "val_loss": round(evaluate(model, eval_small, tc.batch_size, dev), 4)})
            bar.set_postfix(loss=f"{running:.3f}", val=history[-1]["val_loss"] if history else "-",
                            tok_s=f"{tokens_seen / wall:.0f}")
            bar.update(1)
            if step % tc.ckpt_every == 0 and step < tc.steps:
                checkpoint(complete=False)
    except KeyboardInterrupt:
        bar.close()
        checkpoint(complete=False)
        raise
    bar.close()
    final_val = evaluate(model, val, tc.batch_size, dev)
    checkpoint(complete=True, val_loss=round(final_val, 4))
    return out


# ----------------------------------------------------------------------------------------- controls

INITS = ("trained", "random", "shuffled")
INIT_HELP = ("trained: the ordinary model; random: the untrained model of the same preset and seed (the exact "
             "weights training starts from); shuffled: the trained model with every parameter tensor's entries "
             "permuted (same weight distribution, no learned structure)")


def parse_inits(inits) -> tuple[str, ...]:
    """'trained,random' or a sequence -> a checked tuple of INITS (order kept, duplicates dropped)."""
    names = inits.split(",") if isinstance(inits, str) else list(inits)
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in INITS]
    if bad or not names:
        raise TrainConfigError(f"unknown --init {', '.join(bad) or '(none)'}; choose from {', '.join(INITS)} "
                               f"(comma-separated, e.g. trained,random)")
    return tuple(dict.fromkeys(names))


def control_dir(out_dir: str | Path, act_fn: str, init: str) -> Path:
    """Where train_pair puts a model: OUT/<act_fn> (trained) or OUT/<act_fn>-<init> (a control)."""
    return Path(out_dir).expanduser() / (act_fn if init == "trained" else f"{act_fn}-{init}")


def shuffle_weights(model: Transformer, seed: int) -> None:
    """Permute the entries of every parameter tensor in place (one generator seeded by ``seed``, the
    parameters in state-dict order), so the model keeps each tensor's weight distribution and loses
    what training arranged."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            p.copy_(flat[torch.randperm(flat.numel(), generator=g)].reshape(p.shape))


def make_control(
    corpus_dir: str | Path,
    out_dir: str | Path,
    model_cfg: ModelConfig,
    tc: TrainConfig,
    init: str,
    *,
    trained_dir: str | Path | None = None,
    preset: str = "custom",
    device: str = "auto",
    force: bool = False,
    threads: int | None = None,
) -> Path:
    """Write a random-model control checkpoint into ``out_dir``: an ordinary checkpoint (record and
    index treat it like any other) whose config.json says ``"init": "random"`` or ``"shuffled"``.

    random: ``torch.manual_seed(tc.seed)`` then the model, exactly as ``train_one`` starts (same preset,
    same seed: the trained model's initial weights). shuffled: the finished checkpoint ``trained_dir``
    with ``shuffle_weights(seed=tc.seed)``. A finished control with the same settings is kept."""
    if init not in ("random", "shuffled"):
        raise TrainConfigError(f"a control is 'random' or 'shuffled', not {init!r}")
    out, corpus_dir, manifest_hash, tokenizer_json, training, dev, n_threads = _begin(
        out_dir, corpus_dir, preset, tc, device, threads)
    recover_checkpoint_dir(out)
    source_hash = None
    if init == "shuffled":
        if trained_dir is None:
            raise TrainConfigError("a shuffled control needs the trained model (trained_dir)")
        trained_meta = read_config(trained_dir)
        if not trained_meta.get("complete"):
            raise CheckpointError(f"{trained_dir} is not finished training; train it before shuffling its weights")
        source_hash = trained_meta.get("model_sha256")
    if force and out.exists():
        shutil.rmtree(out)
    if out.exists():
        meta = read_config(out)
        same = (ModelConfig.from_dict(meta).to_dict() == model_cfg.to_dict() and meta.get("init") == init
                and _same_training(meta.get("training"), training)
                and meta.get("corpus_manifest_hash") == manifest_hash
                and (source_hash is None or meta.get("shuffled_from") == source_hash))
        if same and meta.get("complete"):
            return out
        if not same:
            raise CheckpointError(f"{out} holds a checkpoint with other settings than this {init} control; "
                                  "pass --force to rebuild it or choose another --out")
    t0 = time.perf_counter()
    if init == "random":
        torch.manual_seed(tc.seed)
        model = Transformer(model_cfg).to(dev)
    else:
        model = load_checkpoint(trained_dir, device=str(dev)).model
        shuffle_weights(model, tc.seed)
    model.eval()
    val = val_windows(load_split(corpus_dir, "val").tokens, model_cfg.n_ctx, tc.eval_tokens * 4)
    val_loss = round(evaluate(model, val, tc.batch_size, dev), 4)
    meta = {"preset": preset, "training": training, "init": init, "corpus_manifest_hash": manifest_hash,
            "corpus_dir": str(corpus_dir), "n_params": param_count(model), "history": [], "resumed_at": [],
            "metrics": {"step": 0, "tokens_seen": 0, "train_loss": None, "val_loss": val_loss,
                        "val_tokens": int(val.shape[0] * (val.shape[1] - 1)),
                        "wall_s": round(time.perf_counter() - t0, 2),
                        "tokens_per_s": None, "device": dev.type, "threads": n_threads},
            "complete": True}
    if source_hash:
        meta["shuffled_from"] = source_hash
    save_checkpoint(out, model, tokenizer_json, meta)
    return out


def model_config_for(preset: str, corpus_dir: str | Path, act_fn: str, **overrides) -> ModelConfig:
    """The preset's model shape with d_vocab from the corpus's tokenizer."""
    p = get_preset(preset)
    vocab = read_manifest(corpus_dir)["tokenizer"]["vocab_size"]
    fields = {**p.model, **{k: v for k, v in overrides.items() if v is not None}}
    if "d_model" in overrides and overrides["d_model"] and "d_head" not in overrides:
        fields["d_head"] = fields["d_model"] // fields["n_heads"]
    try:
        return ModelConfig(**fields, d_vocab=vocab, act_fn=act_fn)
    except (TypeError, ValueError) as e:
        raise TrainConfigError(str(e)) from e


def train_pair(
    corpus_dir: str | Path,
    out_dir: str | Path,
    preset: str = "demo",
    act_fns=("gelu", "solu_ln"),
    *,
    steps: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    progress: bool = True,
    force: bool = False,
    threads: int | None = None,
    model_overrides: dict | None = None,
    train_overrides: dict | None = None,
    inits=("trained",),
) -> dict[str, Path]:
    """Train one model per act_fn into ``out_dir/<act_fn>/`` from the same init and data order.

    Resumes unfinished ones and skips finished ones, so re-running the same command is cheap.
    ``inits`` (``INITS``, e.g. ("trained", "random")): also (or only) write the random-model controls
    ``out_dir/<act_fn>-random/`` and ``-shuffled/`` (``make_control``; a shuffled one trains its model
    first when it is missing). Returns {act_fn: checkpoint dir} for trained models and
    {"<act_fn>-<init>": dir} for controls.
    """
    inits = parse_inits(inits)
    p = get_preset(preset)
    names = parse_act_fns(act_fns)
    tc = replace(p.train, **{k: v for k, v in (train_overrides or {}).items() if v is not None})
    if steps is not None:
        tc = replace(tc, steps=steps, warmup_steps=min(tc.warmup_steps, max(1, steps // 10)))
    if seed is not None:
        tc = replace(tc, seed=seed)
    out = Path(out_dir).expanduser()
    result = {}
    for act_fn in names:
        cfg = model_config_for(preset, corpus_dir, act_fn, **(model_overrides or {}))
        if "trained" in inits or "shuffled" in inits:
            result[act_fn] = train_one(corpus_dir, out / act_fn, cfg, tc, preset=preset, device=device,
                                       progress=progress, force=force and "trained" in inits, threads=threads)
        for init in inits:
            if init != "trained":
                result[f"{act_fn}-{init}"] = make_control(
                    corpus_dir, control_dir(out, act_fn, init), cfg, tc, init, trained_dir=out / act_fn,
                    preset=preset, device=device, force=force, threads=threads)
        if "trained" not in inits:
            result.pop(act_fn, None)
    return result
