"""Checkpoints: a directory any tool can read.

    <dir>/config.json        the model config in TransformerLens field names (loads into
                             HookedTransformerConfig after dropping the extra keys), plus training
                             metrics, corpus_manifest_hash, corpus_dir, the training config,
                             model_sha256 and code_version
    <dir>/model.safetensors  the state dict with TransformerLens parameter names
    <dir>/tokenizer.json     the HF tokenizers byte-level BPE the model was trained with
    <dir>/train_state.pt     only while training is unfinished: optimizer state, step, RNG (resume)

A checkpoint is written into a temporary sibling directory and swapped into place, so a killed
process leaves either the old checkpoint or the new one, never a mix. ``config.json`` records the
sha256 of ``model.safetensors``, so a corrupted or swapped weights file is caught on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from solu_core.model import ACT_FNS, ModelConfig, Transformer, pick_device
from store.errors import CheckpointError
from store.format import atomic

FORMAT = "neurobrowse-checkpoint"
FILES = ("config.json", "model.safetensors", "tokenizer.json")
TRAIN_STATE = "train_state.pt"


def code_version() -> str:
    """The installed neurobrowse version (solu_core may not import the neurobrowse package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neurobrowse")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Checkpoint:
    model: Transformer  # eval mode, on `device`
    config: ModelConfig
    tokenizer: object  # tokenizers.Tokenizer
    tokenizer_json: str
    meta: dict  # all of config.json
    hash: str  # sha256 of model.safetensors
    path: Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    dir: str | Path, model: Transformer, tokenizer_json: str, meta: dict, train_state: dict | None = None
) -> Path:
    """Write a checkpoint directory atomically (temp sibling, then swap). Returns the path.

    ``meta`` is merged into config.json after the model config; ``train_state`` (optimizer state,
    step, RNG) goes to train_state.pt in the same swap, so weights and optimizer always agree.
    """
    from safetensors.torch import save_file

    out = Path(dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp / "model.safetensors", 0o666 & ~umask)  # safetensors writes 0600; others may read it
        (tmp / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        config = {
            **model.cfg.to_dict(),
            **meta,
            "format": FORMAT,
            "code_version": code_version(),
            "model_sha256": sha256_file(tmp / "model.safetensors"),
            "tokenizer_sha256": hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest(),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        atomic.swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_checkpoint_dir(dir: str | Path) -> None:
    """Tidy after a writer that was killed mid-save: remove its temp dirs and, when it died between
    the two renames of the swap, put the previous checkpoint back. Only touches dirs of dead pids."""
    out = Path(dir).expanduser().resolve()
    if not out.parent.is_dir():
        return
    for kind in ("old", "tmp"):
        for p in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
            pid = p.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _pid_alive(int(pid)):
                continue
            if kind == "old" and not out.exists() and (p / "config.json").exists():
                os.rename(p, out)
            else:
                shutil.rmtree(p, ignore_errors=True)


def read_config(dir: str | Path) -> dict:
    """config.json of a checkpoint, checked to be ours. Cheap: reads no weights."""
    root = Path(dir).expanduser()
    if not root.is_dir():
        raise CheckpointError(f"checkpoint {root} does not exist; train one with `neurobrowse train`")
    path = root / "config.json"
    if not path.exists():
        raise CheckpointError(f"{path} is missing: {root} is not a neurobrowse checkpoint "
                              "(train one with `neurobrowse train`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e}); retrain or restore the checkpoint") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a neurobrowse checkpoint config (no format {FORMAT!r}); "
                              "is this a foreign model?")
    if meta.get("act_fn") not in ACT_FNS:
        raise CheckpointError(f"{path} has act_fn {meta.get('act_fn')!r}; "
                              f"neurobrowse models use one of {', '.join(ACT_FNS)}")
    return meta


def load_checkpoint(dir: str | Path, device: str = "auto", verify: bool = True) -> Checkpoint:
    """Load a checkpoint: model in eval mode on ``device``, its config, tokenizer and metadata.

    Raises CheckpointError naming the file when anything is missing, truncated, corrupt or foreign.
    ``verify`` checks the weights against the sha256 recorded in config.json.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    root = Path(dir).expanduser().resolve()
    meta = read_config(root)
    try:
        cfg = ModelConfig.from_dict(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{root / 'config.json'} holds an unusable model config ({e})") from e

    tpath = root / "tokenizer.json"
    try:
        tokenizer_json = tpath.read_text(encoding="utf-8")
        tokenizer = Tokenizer.from_str(tokenizer_json)
    except FileNotFoundError as e:
        raise CheckpointError(f"{tpath} is missing; copy the corpus's tokenizer.json there or retrain") from e
    except Exception as e:  # tokenizers raises a plain Exception for bad JSON
        raise CheckpointError(f"{tpath} is corrupt or truncated ({e}); copy the corpus's tokenizer.json there") from e
    if tokenizer.get_vocab_size() > cfg.d_vocab:
        raise CheckpointError(
            f"{tpath} has {tokenizer.get_vocab_size()} tokens but the model's d_vocab is {cfg.d_vocab}: "
            "the tokenizer does not belong to this checkpoint"
        )
    tokenizer_sha = hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()
    if "tokenizer_sha256" in meta and tokenizer_sha != meta["tokenizer_sha256"]:
        raise CheckpointError(f"{tpath} is not the tokenizer this model was trained with "
                              "(sha256 differs from config.json)")

    wpath = root / "model.safetensors"
    if not wpath.exists():
        raise CheckpointError(f"{wpath} is missing; the checkpoint is incomplete, retrain or restore it")
    digest = sha256_file(wpath)
    if verify and "model_sha256" in meta and digest != meta["model_sha256"]:
        raise CheckpointError(f"{wpath} is corrupt: its sha256 differs from the one in config.json; "
                              "retrain or restore it")
    try:
        sd = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{wpath} is corrupt or truncated ({e}); retrain or restore it") from e

    model = Transformer(cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{wpath} does not fit the config in config.json ({str(e).splitlines()[0]}...); "
            "is it a foreign model or a mixed-up checkpoint?"
        ) from e
    dev = pick_device(device)
    model.to(dev).eval()
    return Checkpoint(model=model, config=cfg, tokenizer=tokenizer, tokenizer_json=tokenizer_json,
                      meta=meta, hash=digest, path=root)


def check_tokenizer_matches(checkpoint: Checkpoint, corpus_dir: str | Path) -> None:
    """Raise CheckpointError when the corpus's tokenizer is not the checkpoint's (token ids would mean other things)."""
    tpath = Path(corpus_dir).expanduser() / "tokenizer.json"
    try:
        theirs = hashlib.sha256(tpath.read_bytes()).hexdigest()
    except FileNotFoundError as e:
        raise CheckpointError(f"{tpath} is missing: {corpus_dir} is not a corpus") from e
    mine = hashlib.sha256(checkpoint.tokenizer_json.encode("utf-8")).hexdigest()
    if theirs != mine:
        raise CheckpointError(
            f"the tokenizer {tpath} does not match the checkpoint {checkpoint.path}'s tokenizer.json; "
            f"use the corpus the model was trained on ({checkpoint.meta.get('corpus_dir', 'see its config.json')})"
        )
