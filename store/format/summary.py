"""What a store holds, in sizes and files: bytes on disk, the files a reader needs that are gone
(existence only; `neurobrowse verify` reads everything) and the summary `neurobrowse info` and the app
show. ``st`` is a store.format.reader.Store."""

from __future__ import annotations

import os
from pathlib import Path

from store import schema
from store.format import chunkio


def size_on_disk(root: Path) -> int:
    """Bytes of all files under ``root`` (a store, or one array / group folder in it)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def missing_files(st) -> list[str]:
    """Files a reader needs that are gone (cheap: existence only, no checksums; `neurobrowse verify`
    reads everything): the metadata of each recorded array, every chunk with a completion marker,
    and each finished index's array metadata. Paths relative to the store."""
    out = []
    for name in st.per_token_arrays:
        if not (st.path / name / "zarr.json").is_file():
            out.append(f"{name}/zarr.json")
            continue
        marker = st.path / schema.done_path(name) / "c"
        if not marker.is_dir():
            continue
        ndim = 1 if name in (schema.TOKENS, schema.DOC_STARTS) else 2
        for m in marker.iterdir():
            coords = (int(m.name),) + (0,) * (ndim - 1) if m.name.isdigit() else None
            if coords is not None and not chunkio.chunk_path(st.path, name, coords).is_file():
                out.append(f"{name}/{chunkio.chunk_key(coords)}")
    for hook in st.hooks:
        if st.index_state(hook).get("complete"):
            out += [f"{schema.index_path(hook)}/{a}/zarr.json" for a in schema.INDEX_ARRAYS
                    if a not in schema.INDEX_DERIVED
                    and not (st.path / schema.index_path(hook) / a / "zarr.json").is_file()]
    return out


def info(st) -> dict:
    """A summary for `neurobrowse info` and the app."""
    dense_raw = sum(st.n_tokens * st.d_mlp * 2 for _ in st.recorded_hooks) if st.dense else 0
    dense_disk = sum(st.size_on_disk(h) for h in st.recorded_hooks) if st.dense else 0
    per_hook = {}
    for h in st.hooks:
        state = st.index_state(h)
        per_hook[h] = {"indexed": st.is_indexed(h), "index_state": state,
                       "bytes_on_disk": st.size_on_disk(h) if h in st.recorded_hooks else
                       st.size_on_disk(schema.dictionary_path(h))}
        if schema.is_feature_hook(h):
            per_hook[h]["features"] = st.n_units(h)
    done = st.done_chunks()
    m = st.manifest
    return {
        "path": str(st.path),
        "schema_version": m.get("schema_version"),
        "run_uuid": m.get("run_uuid"),
        "created": m.get("created"),
        "code_version": m.get("code_version"),
        "model": {k: st.model_config.get(k) for k in ("act_fn", "n_layers", "d_model", "d_mlp", "d_vocab", "n_ctx")},
        "checkpoint_path": m.get("checkpoint_path"),
        "checkpoint_hash": m.get("checkpoint_hash"),
        "tokenizer_hash": m.get("tokenizer_hash"),
        "corpus_manifest_hash": m.get("corpus_manifest_hash"),
        "hooks": per_hook,
        "n_tokens": st.n_tokens,
        "context_len": st.context_len,
        "chunk_tokens": st.chunk_tokens,
        "chunks_done": done,
        "n_chunks": st.n_chunks,
        "complete": st.complete,
        "missing_files": st.missing_files(),
        "resume_command": None if st.complete else st.resume_command(),
        "size_on_disk": st.size_on_disk(),
        "dense": st.dense,
        "dense_bytes_raw": dense_raw,
        "dense_bytes_on_disk": dense_disk,
        "compression_ratio": dense_raw / dense_disk if dense_disk else None,
    }
