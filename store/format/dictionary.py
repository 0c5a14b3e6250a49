"""Dictionaries (sparse autoencoders) over a recorded hook, in the SAELens on-disk layout, without torch.

A dictionary lives in ``STORE/dictionaries/{feature hook}/`` (store.schema):

* ``cfg.json``                 SAELens's config: ``d_in``, ``d_sae``, ``architecture`` ("topk", "standard" =
                               ReLU, "jumprelu"), ``k``, ``apply_b_dec_to_input``, ``normalize_activations``,
                               ``dtype``, ``meta`` {``hook_name``, ``hook_layer``, ``model_name``, ...}; the
                               pre-v6 top-level copies (``hook_name``, ``activation_fn_str``, ...) too, so
                               older SAELens, SAEDashboard and Neuronpedia loaders read it.
* ``sae_weights.safetensors``  ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_in], ``b_dec``
                               [d_in] (and ``threshold`` [d_sae] for jumprelu), float32.
* ``sparsity.safetensors``     ``sparsity`` [d_sae]: log10 of each feature's firing frequency (SAELens).
* ``neurobrowse.json``         what neurobrowse adds: the source hook, the store it was trained on, the
                               training settings and the metrics (store.format.dictionary.METRIC_KEYS).

Features are f = act(pre), pre = (x - b_dec) @ W_enc + b_enc (b_dec subtracted when
``apply_b_dec_to_input``), act = keep the k largest then ReLU (topk), ReLU (standard) or pre * (pre >
threshold) (jumprelu); the reconstruction is f @ W_dec + b_dec. ``encode`` here is the numpy version the
reader and the indexer use (the trainer in solu_core.dictionary.train uses torch and gives the same features).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from store import schema
from store.errors import NeurobrowseError
from store.format import atomic

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
META_FILE = "neurobrowse.json"
ARCHITECTURES = ("topk", "batchtopk", "standard", "jumprelu")
ALIGNED = 0.9  # a feature whose decoder direction has |cosine| >= this with one neuron's basis direction
SPREAD = 0.5  # a feature whose largest |cosine| with any neuron is below this: spread over many


class DictionaryError(NeurobrowseError):
    """A dictionary folder that is missing, foreign in a way we cannot read, or does not fit the hook."""


@dataclass
class Dictionary:
    """One sparse autoencoder, loaded (numpy float32)."""

    folder: Path | None
    cfg: dict  # cfg.json
    W_enc: np.ndarray  # [d_in, d_sae]
    b_enc: np.ndarray  # [d_sae]
    W_dec: np.ndarray  # [d_sae, d_in]
    b_dec: np.ndarray  # [d_in]
    threshold: np.ndarray | None = None  # [d_sae], jumprelu only
    meta: dict = field(default_factory=dict)  # neurobrowse.json ({} for a folder trained elsewhere)

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def architecture(self) -> str:
        return str(self.cfg.get("architecture", "topk"))

    @property
    def k(self) -> int | None:
        k = self.cfg.get("k", (self.cfg.get("activation_fn_kwargs") or {}).get("k"))
        return int(k) if k is not None else None

    def encode(self, x: np.ndarray, block: int = 4096) -> np.ndarray:
        """float32 [R, d_sae] features of the rows ``x`` [R, d_in] (any float dtype), in blocks of rows."""
        x = np.asarray(x)
        out = np.empty((x.shape[0], self.d_sae), np.float32)
        apply_b = bool(self.cfg.get("apply_b_dec_to_input", True))
        for s in range(0, x.shape[0], block):
            xb = x[s:s + block].astype(np.float32)
            if apply_b:
                xb = xb - self.b_dec
            pre = xb @ self.W_enc + self.b_enc  # [r, d_sae]
            out[s:s + block] = self._activate(pre)
        return out

    def _activate(self, pre: np.ndarray) -> np.ndarray:
        arch = self.architecture
        if arch in ("topk", "batchtopk"):
            k = self.k
            if k is None or k >= pre.shape[1]:
                return np.maximum(pre, 0)
            # the k largest of each row (ties broken as argpartition does; the trainer's torch.topk
            # agrees except on exact ties, which float activations practically never have)
            idx = np.argpartition(pre, pre.shape[1] - k, axis=1)[:, pre.shape[1] - k:]
            vals = np.take_along_axis(pre, idx, 1)
            out = np.zeros_like(pre)
            np.put_along_axis(out, idx, np.maximum(vals, 0), 1)
            return out
        if arch == "jumprelu":
            return np.where(pre > self.threshold, pre, 0).astype(np.float32)
        return np.maximum(pre, 0)

    def decode(self, f: np.ndarray) -> np.ndarray:
        """float32 [R, d_in] reconstruction of features ``f`` [R, d_sae]."""
        return np.asarray(f, np.float32) @ self.W_dec + self.b_dec

    @property
    def source_hook(self) -> str | None:
        meta = self.cfg.get("meta") or {}
        return self.meta.get("source_hook") or meta.get("hook_name") or self.cfg.get("hook_name")


# ---- reading and writing the SAELens layout -----------------------------------------------------------


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError as e:  # pragma: no cover - safetensors is a core dependency
        raise DictionaryError("reading a dictionary needs the safetensors package: pip install safetensors") from e
    try:
        return dict(load_file(str(path)))
    except Exception as e:
        raise DictionaryError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                              f"save the weights as float32 safetensors") from e


def load_dictionary(folder: str | Path, expect_d_in: int | None = None, what: str = "") -> Dictionary:
    """The dictionary in ``folder`` (SAELens layout), checked: a DictionaryError naming the file and the fix
    for a missing or unreadable file, an architecture or normalisation we do not implement, weights whose
    shapes disagree, non-finite weights, or a d_in other than ``expect_d_in`` (``what`` names the hook)."""
    folder = Path(folder)
    cfg_path, w_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise DictionaryError(f"{folder} is not a folder; give a dictionary folder holding {CFG_FILE} and "
                              f"{WEIGHTS_FILE}")
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise DictionaryError(f"{folder} has no {p.name}; a dictionary folder (the SAELens layout) holds "
                                  f"{CFG_FILE} and {WEIGHTS_FILE}")
    try:
        cfg = json.loads(cfg_path.read_text())
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise DictionaryError(f"{cfg_path} is not a readable JSON object ({e})") from e
    arch = str(cfg.get("architecture") or ("topk" if cfg.get("activation_fn_str") == "topk" else "standard"))
    cfg["architecture"] = arch
    if arch not in ARCHITECTURES:
        raise DictionaryError(f"{cfg_path}: architecture {arch!r} is not one neurobrowse computes; it reads "
                              f"{', '.join(ARCHITECTURES)}")
    norm = str(cfg.get("normalize_activations") or "none")
    if norm != "none":
        raise DictionaryError(f"{cfg_path}: normalize_activations {norm!r} is not supported; fold the scaling into "
                              f"the weights first (SAELens: sae.fold_activation_norm_scaling_factor)")
    t = _read_tensors(w_path)
    missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if n not in t]
    if arch == "jumprelu" and "threshold" not in t:
        missing.append("threshold")
    if missing:
        raise DictionaryError(f"{w_path} lacks {', '.join(missing)}; it holds {', '.join(sorted(t)) or 'nothing'}")
    W_enc, b_enc, W_dec, b_dec = (np.asarray(t[n], np.float32) for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    d_in, d_sae = W_enc.shape if W_enc.ndim == 2 else (0, 0)
    if (W_enc.ndim != 2 or W_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,)):
        raise DictionaryError(f"{w_path}: the weights do not fit together (W_enc {W_enc.shape}, b_enc {b_enc.shape}, "
                              f"W_dec {W_dec.shape}, b_dec {b_dec.shape}; want [d_in, d_sae], [d_sae], [d_sae, d_in], "
                              f"[d_in])")
    for key in ("d_in", "d_sae"):
        if key in cfg and int(cfg[key]) != (d_in if key == "d_in" else d_sae):
            raise DictionaryError(f"{cfg_path} says {key} {cfg[key]} but the weights have "
                                  f"{d_in if key == 'd_in' else d_sae}")
    threshold = np.asarray(t["threshold"], np.float32) if "threshold" in t else None
    for name, a in (("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec), ("b_dec", b_dec)):
        if not np.isfinite(a).all():
            raise DictionaryError(f"{w_path}: {name} holds NaN or infinite values; the dictionary is damaged")
    if arch in ("topk", "batchtopk"):
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        if k is None or not 1 <= int(k) <= d_sae:
            raise DictionaryError(f"{cfg_path}: a {arch} dictionary needs k in 1..{d_sae} (got {k!r})")
    if expect_d_in is not None and d_in != int(expect_d_in):
        raise DictionaryError(f"{folder} reads d_in = {d_in} activations, but {what or 'the hook'} has "
                              f"{expect_d_in} neurons; load it onto a hook of width {d_in} (or train one here "
                              f"with `neurobrowse features train`)")
    meta = {}
    if (folder / META_FILE).is_file():
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError):
            meta = {}
    return Dictionary(folder, cfg, W_enc, b_enc, W_dec, b_dec, threshold, meta)


def saelens_cfg(d_in: int, d_sae: int, k: int, hook_name: str, model_name: str | None = None,
                context_size: int | None = None, dataset_path: str | None = None) -> dict:
    """cfg.json of a TopK dictionary, as SAELens (v6 ``TopKSAEConfig.to_dict``, plus the pre-v6 top-level
    fields other loaders read) writes it."""
    layer = schema.parse_hook_name(hook_name)[0]
    meta = {"model_name": model_name, "hook_name": hook_name, "model_class_name": "HookedTransformer",
            "hook_layer": layer, "hook_head_index": None, "model_from_pretrained_kwargs": {}, "prepend_bos": False,
            "exclude_special_tokens": False, "neuronpedia_id": None, "context_size": context_size,
            "seqpos_slice": [None], "dataset_path": dataset_path, "sae_lens_version": "6.0.0",
            "sae_lens_training_version": None}
    return {"d_in": int(d_in), "d_sae": int(d_sae), "dtype": "float32", "device": "cpu",
            "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
            "meta": meta, "architecture": "topk", "k": int(k),
            # pre-v6 top-level fields
            "model_name": model_name, "hook_name": hook_name, "hook_layer": layer, "hook_head_index": None,
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": int(k)}, "context_size": context_size,
            "finetuning_scaling_factor": False, "prepend_bos": False, "dataset_path": dataset_path}


def save_dictionary(folder: str | Path, cfg: dict, weights: dict[str, np.ndarray], meta: dict,
                    sparsity: np.ndarray | None = None) -> Path:
    """Write a dictionary folder whole: into a sibling temporary folder first, then renamed into place,
    so ``folder`` exists only complete (a folder there already is replaced)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
        if sparsity is not None:
            save_file({"sparsity": np.ascontiguousarray(sparsity, np.float32)}, str(tmp / SPARSITY_FILE))
        (tmp / CFG_FILE).write_text(json.dumps(cfg, indent=2))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        for f in tmp.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        atomic.swap_in(tmp, folder)  # an older folder is exchanged with it in one step, then deleted
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def update_meta(folder: str | Path, **fields) -> dict:
    """Add fields to a dictionary's neurobrowse.json (written to a temporary file, then renamed)."""
    p = Path(folder) / META_FILE
    meta = json.loads(p.read_text()) if p.is_file() else {}
    meta.update(fields)
    atomic.write_text(p, json.dumps(meta, indent=2, default=_json_default))
    return meta


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def list_dictionaries(store_path: str | Path) -> dict[str, Path]:
    """{feature hook: folder} of the complete dictionaries of a store (folders named by a feature hook,
    holding cfg.json and the weights)."""
    root = Path(store_path) / schema.DICTIONARY_GROUP
    if not root.is_dir():
        return {}
    out = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_dir() or not schema.is_feature_hook(p.name):
            continue
        if (p / CFG_FILE).is_file() and (p / WEIGHTS_FILE).is_file():
            out[p.name] = p
    return out


def install_dictionary(store_path: str | Path, folder: str | Path, source_hook: str, name: str,
                       d_in: int) -> str:
    """Copy a dictionary folder trained elsewhere into the store as the features of ``source_hook`` named
    ``name`` (checked first: a mismatched d_in is a DictionaryError). Returns the feature hook."""
    d = load_dictionary(folder, expect_d_in=d_in, what=source_hook)
    hook = schema.feature_hook_name(source_hook, name)
    dest = Path(store_path) / schema.dictionary_path(hook)
    if dest.exists():
        raise DictionaryError(f"{Path(store_path)} already has a dictionary {hook!r}; choose another --name")
    weights = {"W_enc": d.W_enc, "b_enc": d.b_enc, "W_dec": d.W_dec, "b_dec": d.b_dec}
    if d.threshold is not None:
        weights["threshold"] = d.threshold
    sparsity = None
    if (Path(folder) / SPARSITY_FILE).is_file():
        sparsity = _read_tensors(Path(folder) / SPARSITY_FILE).get("sparsity")
    meta = {**d.meta, "source_hook": source_hook, "name": name, "feature_hook": hook,
            "loaded_from": str(Path(folder).resolve()), "trained_here": False}
    save_dictionary(dest, d.cfg, weights, meta, sparsity)
    return hook


# ---- measures of a dictionary (no model needed) -----------------------------------------------------------


def alignment(W_dec: np.ndarray, aligned: float = ALIGNED, spread: float = SPREAD, live=None) -> dict:
    """Feature-neuron alignment: per feature the largest |cosine| between its decoder direction (a row of
    W_dec [d_sae, d_in]) and any neuron's basis direction, i.e. max_n |W_dec[f, n]| / ||W_dec[f]||; the share
    of features aligned with one neuron (>= ``aligned``) and spread over many (< ``spread``). With ``live`` (a
    [d_sae] mask of the features that fire) the shares and the median count the live features only: a dead
    feature keeps its random initial direction and would read as "spread"; the dead ones are reported apart
    (``dead_*``). ``max_cos`` always covers every feature."""
    W = np.asarray(W_dec, np.float64)
    norm = np.linalg.norm(W, axis=1)
    cos = np.where(norm > 0, np.abs(W).max(axis=1) / np.maximum(norm, 1e-30), 0.0)
    mask = np.ones(cos.shape, bool) if live is None else np.asarray(live, bool).reshape(cos.shape)

    def shares(c, prefix=""):
        return {prefix + "aligned_share": float(np.mean(c >= aligned)) if c.size else 0.0,
                prefix + "spread_share": float(np.mean(c < spread)) if c.size else 0.0,
                prefix + "median_max_cos": float(np.median(c)) if c.size else float("nan")}

    out = {"max_cos": cos.astype(np.float32), **shares(cos[mask]), "live_count": int(mask.sum()),
           "dead_count": int((~mask).sum()), "aligned_threshold": aligned, "spread_threshold": spread}
    if live is not None:
        out.update(shares(cos[~mask], "dead_"))
    return out


def live_features(d: Dictionary) -> np.ndarray | None:
    """[d_sae] mask of the features that fired on the held-out tokens (``sparsity.safetensors`` above its
    floor of log10 1e-10), or None when the dictionary's folder has no sparsity file."""
    p = Path(d.folder) / SPARSITY_FILE if d.folder is not None else None
    if p is None or not p.is_file():
        return None
    sp = _read_tensors(p).get("sparsity")
    return None if sp is None or sp.shape != (d.d_sae,) else np.asarray(sp, np.float64) > -10 + 1e-6


def top_loadings(row: np.ndarray, n: int = 8, min_share: float = 0.0) -> list[tuple[int, float]]:
    """The ``n`` entries of ``row`` largest in absolute value, as (index, value), largest first (those whose
    square is at least ``min_share`` of the row's squared norm)."""
    row = np.asarray(row, np.float64)
    order = np.argsort(-np.abs(row), kind="stable")[:n]
    total = float((row ** 2).sum()) or 1.0
    return [(int(i), float(row[i])) for i in order if row[i] ** 2 >= min_share * total]


__all__ = ["ALIGNED", "ARCHITECTURES", "CFG_FILE", "Dictionary", "DictionaryError", "META_FILE", "SPARSITY_FILE",
           "SPREAD", "WEIGHTS_FILE", "alignment", "install_dictionary", "list_dictionaries", "live_features",
           "load_dictionary", "save_dictionary", "saelens_cfg", "top_loadings", "update_meta"]
