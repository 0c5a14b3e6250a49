"""The one check of a store's manifest: every field a reader uses, validated once when the store is opened.

``schema.read_manifest`` reads the manifest (root zarr.json, attrs[ATTRS_KEY]); ``validate_manifest``
checks it whole before any verb uses a field: types, ranges, required fields, and consistency with the
arrays on disk (the token arrays and each dense hook array have the shape and chunks the manifest
implies). ``Store.open``, ``verify`` and a resumed ``record`` go through it, so nothing downstream
divides by a ``chunk_tokens`` of 0, indexes with a ``d_mlp`` the arrays do not have, or fails on a
missing ``hooks`` with a KeyError. A bad manifest is a StoreError naming the field, what it holds and
what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

from store import schema
from store.errors import StoreError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def manifest_problems(m: dict, path: Path | None = None) -> list[str]:
    """What is wrong with the manifest ``m`` (empty when nothing); with ``path``, also its consistency
    with the store's array metadata there."""
    out = []

    def need_int(key, lo, where=m, name=None):
        v = where.get(key) if isinstance(where, dict) else None
        if not _is_int(v) or v < lo:
            out.append(f"{name or key} is {v!r}, expected a whole number of at least {lo}")
            return None
        return v

    if m.get("schema_version") != schema.SCHEMA_VERSION:
        return []  # another schema version: said apart by the caller (re-record with this version)
    if not isinstance(m.get("run_uuid"), str) or not m.get("run_uuid"):
        out.append(f"run_uuid is {m.get('run_uuid')!r}, expected the recording's id (a string)")
    cfg = m.get("model_config")
    d_mlp = n_layers = None
    if not isinstance(cfg, dict):
        out.append(f"model_config is {type(cfg).__name__}, expected an object")
    else:
        d_mlp = need_int("d_mlp", 1, cfg, "model_config.d_mlp")
        n_layers = need_int("n_layers", 1, cfg, "model_config.n_layers") if "n_layers" in cfg else None
        if "d_vocab" in cfg and cfg["d_vocab"] is not None:
            need_int("d_vocab", 1, cfg, "model_config.d_vocab")
    hooks = m.get("hooks")
    if not isinstance(hooks, list) or not hooks or not all(isinstance(h, str) for h in hooks):
        out.append(f"hooks is {hooks!r}, expected a non-empty list of hook names")
        hooks = []
    else:
        for h in hooks:
            try:
                layer, _ = schema.parse_hook_name(h)
            except ValueError as e:
                out.append(f"hooks: {e}")
                continue
            if n_layers is not None and layer >= n_layers:
                out.append(f"hooks: {h!r} is past the model's {n_layers} layers")
        if len(set(hooks)) != len(hooks):
            out.append(f"hooks names a hook twice ({hooks!r})")
    n_tokens = need_int("n_tokens", 1)
    ctx = need_int("context_len", 1)
    ct = need_int("chunk_tokens", 1)
    if ct and ctx and ct % ctx:
        out.append(f"chunk_tokens {ct} is not a multiple of context_len {ctx}")
    if not isinstance(m.get("complete"), bool):
        out.append(f"complete is {m.get('complete')!r}, expected true or false")
    if "dense" in m and not isinstance(m["dense"], bool):
        out.append(f"dense is {m['dense']!r}, expected true or false")
    if out or path is None:
        return out
    # consistency with the arrays: the token arrays and each dense hook array as the manifest implies
    dense = m.get("dense", True)
    wants = {schema.TOKENS: ([n_tokens], [ct]), schema.DOC_STARTS: ([n_tokens], [ct])}
    if dense:
        wants.update({h: ([n_tokens, d_mlp], [ct, d_mlp]) for h in hooks})
    for name, (shape, chunks) in wants.items():
        meta_path = Path(path) / name / "zarr.json"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            continue  # not created yet (a recording that stopped early) or lost: the readers name it
        except (OSError, ValueError):
            continue  # garbage metadata: the readers name the array
        try:
            got = [int(x) for x in meta["shape"]]
            got_chunks = [int(x) for x in meta["chunk_grid"]["configuration"]["chunk_shape"]]
        except (KeyError, TypeError, ValueError):
            continue
        if got != shape:
            out.append(f"the manifest implies {name} has shape {shape} (n_tokens, d_mlp), but its zarr.json says {got}")
        elif got_chunks != chunks:
            out.append(f"the manifest implies {name} has chunks {chunks} (chunk_tokens), but its zarr.json says "
                       f"{got_chunks}")
    return out


def validate_manifest(m: dict, path) -> dict:
    """``m`` when it is a whole, consistent manifest of the store at ``path``; StoreError otherwise."""
    problems = manifest_problems(m, Path(path))
    if problems:
        cmd = m.get("record_command") if isinstance(m.get("record_command"), str) else None
        fix = (f"record it again into a new --out (it was recorded with: {cmd})" if cmd else
               "record it again into a new --out")
        raise StoreError(f"{path}: the manifest in {Path(path) / 'zarr.json'} is damaged: {'; '.join(problems[:3])}"
                         f"{' (and more)' if len(problems) > 3 else ''}; neurobrowse cannot read this store: {fix}")
    return m


__all__ = ["manifest_problems", "validate_manifest"]
