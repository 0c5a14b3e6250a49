"""The random-model control of the sweep: one function, ``make_control``, so the pipeline does not care
whose control it is.

The control is the verdict engineer's (issue 20: ``solu_core.train.make_control``, init "random": the
untrained model of the same shape and seed, exactly the weights training starts from) where this checkout
has it; otherwise the stand-in below writes the same untrained GeLU (``torch.manual_seed(seed)`` then the
model) as a finished checkpoint, evaluated on the same validation windows. Either way its neurons go
through the same record / index / study steps as the trained ones.
"""

from __future__ import annotations

from pathlib import Path

CONTROL_KIND = "untrained"  # what the stand-in makes


def make_control(trained: Path, out: Path, *, device: str = "auto", kind: str = CONTROL_KIND) -> Path:
    """A finished checkpoint at ``out``: the random-model control matching the trained checkpoint
    ``trained`` (same shape, corpus, tokenizer and seed). Skipped when ``out`` is already complete."""
    import torch

    from solu_core.corpus.folder import load_split
    from solu_core.checkpoint import load_checkpoint, read_config, save_checkpoint
    from solu_core.model import Transformer, param_count, pick_device
    from solu_core.train import evaluate, val_windows

    out = Path(out)
    if (out / "config.json").exists() and read_config(out).get("complete"):
        return out
    try:  # the verdict engineer's control (solu_core.train, issue 20) when this checkout has it
        from solu_core.train import make_control as train_control
    except ImportError:
        train_control = None
    if train_control is not None:
        from solu_core.model import ModelConfig
        from solu_core.presets import TrainConfig

        meta = read_config(trained)
        training = dict(meta["training"])
        preset = training.pop("preset", "custom")
        init = {"untrained": "random"}.get(kind, kind)
        return train_control(meta["corpus_dir"], out, ModelConfig.from_dict(meta), TrainConfig(**training), init,
                             trained_dir=trained, preset=preset, device=device)
    if kind != "untrained":
        raise ValueError(f"control kind {kind!r} is not available here; use 'untrained'")
    ck = load_checkpoint(trained, device="cpu")
    meta = ck.meta
    tc = meta["training"]
    corpus_dir = Path(meta["corpus_dir"])
    dev = pick_device(device)
    torch.manual_seed(int(tc["seed"]))
    model = Transformer(ck.config).to(dev).eval()  # the trained model's initial weights, never trained
    val = val_windows(load_split(corpus_dir, "val").tokens, ck.config.n_ctx, int(tc["eval_tokens"]) * 4)
    loss = evaluate(model, val, int(tc["batch_size"]), dev)
    control_meta = {
        "preset": meta.get("preset"), "training": None, "control": {"kind": kind, "of": str(Path(trained).resolve())},
        "corpus_manifest_hash": meta.get("corpus_manifest_hash"), "corpus_dir": str(corpus_dir),
        "n_params": param_count(model), "history": [],
        "metrics": {"step": 0, "tokens_seen": 0, "val_loss": round(loss, 4),
                    "val_tokens": int(val.shape[0] * (val.shape[1] - 1)), "wall_s": 0.0, "device": dev.type},
        "complete": True,
    }
    save_checkpoint(out, model, ck.tokenizer_json, control_meta)
    return out
