"""Writing an activation store chunk by chunk, resumably.

The recorder (solu_core.record, or a Dask worker) hands over whole chunks; each chunk is written,
flushed to disk, and only then gets its completion marker. A process killed at any point leaves
a store whose markers name exactly the chunks that are safely on disk, so the same command resumes
and rewrites only the rest. ``finish()`` checks every marker and every chunk file, then sets the
manifest's ``complete`` flag last.

Array names, chunk shapes, codecs and attributes come from store.schema; this module spells none.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from store.format import chunkio
from store import schema
from store.errors import StoreError
from store.schema import read_manifest

# Manifest fields that must match for a resume to continue an existing store.
_RESUME_KEYS = ("model_config", "hooks", "n_tokens", "context_len", "chunk_tokens", "tokenizer_hash",
                "checkpoint_hash", "corpus_manifest_hash", "text_sha256", "dense")
_RESUME_DEFAULTS = {"dense": True}  # the value of a resume key a store made before it existed has


def code_version() -> str:
    """The installed neurobrowse distribution version (store must not import the app package)."""
    try:
        from importlib.metadata import version

        return version("neurobrowse")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file and its directory entry to disk (zarr writes via temp file + rename, no fsync)."""
    chunkio.fsync_dir(path)  # a file opened read-only is flushed the same way as a folder
    chunkio.fsync_dir(path.parent)


def writer_started(path: Path) -> bool:
    """True when any chunk of a per-token array of the store at ``path`` has a completion marker (or
    the folders are not the ones a store has): a store with none holds nothing worth keeping."""
    done = Path(path) / schema.DONE_GROUP
    known = {"zarr.json", schema.DONE_GROUP, schema.TOKENS, schema.DOC_STARTS, schema.TOKENIZER_JSON,
             schema.LOGIT_GROUP}
    if any(p.name not in known and not p.name.startswith("blocks.") for p in Path(path).iterdir()):
        return True
    if not done.is_dir():
        return False
    return any((m / "c").is_dir() and any((m / "c").iterdir()) for m in done.iterdir()
               if m.name not in (schema.TOKENIZER_JSON, schema.LOGIT_GROUP))


class StoreWriter:
    """Creates (or reopens) a store and writes whole chunks with completion markers.

    Use ``create_or_resume`` from the recorder; ``attach`` from extra processes (Dask workers) that
    write chunks of a store that already exists. Per-token arrays: ``schema.TOKENS``,
    ``schema.DOC_STARTS`` and one float16 [token, neuron] array per hook name.
    """

    def __init__(self, path: Path, group: zarr.Group, manifest: dict, fsync: bool = True):
        self.path = Path(path)
        self.group = group
        self.manifest = manifest
        self.fsync = fsync  # flush each chunk to disk before writing its marker
        self.hooks: list[str] = list(manifest["hooks"])
        self.n_tokens: int = int(manifest["n_tokens"])
        self.context_len: int = int(manifest["context_len"])
        self.chunk_tokens: int = int(manifest["chunk_tokens"])
        self.d_mlp: int = int(manifest["model_config"]["d_mlp"])
        self.dense: bool = bool(manifest.get("dense", True))  # False: tokens and the index only (--dense none)
        self.n_chunks: int = schema.n_chunks(self.n_tokens, self.chunk_tokens)
        self.layers: list[int] = sorted({schema.parse_hook_name(h)[0] for h in self.hooks})
        self._arrays: dict[str, zarr.Array] = {}
        self._direct: dict[str, str | None] = {}  # array name -> chunkio layout (None: written by zarr)
        self._dirs: set[Path] = set()  # chunk directories known to exist
        self.rechecked: dict[str, list[int]] = {}  # chunks found damaged by create_or_resume (see recheck)

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(
        cls,
        path: str | Path,
        *,
        model_config: dict,
        hooks: list[str],
        n_tokens: int,
        context_len: int,
        tokenizer_json: str,
        manifest: dict,
        chunk_tokens: int | None = None,
        fsync: bool = True,
        dense: bool = True,
    ) -> "StoreWriter":
        """Create a new store at ``path``, or reopen the one there if it was made with the same
        arguments (then only pending chunks need writing). ``manifest`` carries the caller's
        fields (checkpoint_hash, checkpoint_path, corpus_manifest_hash, record_command, ...).

        ``dense=False``: no dense activation arrays (the recorder indexes the activations as they are
        produced; the hooks are still the store's hooks, indexed but not kept).

        Raises StoreError when ``path`` holds something else, or a store made with other arguments.
        """
        path = Path(path).absolute()
        for h in hooks:
            schema.parse_hook_name(h)  # ValueError for a malformed name
        if not hooks:
            raise StoreError("no hooks to record; name at least one, e.g. blocks.0.mlp.hook_post")
        d_mlp = int(model_config["d_mlp"])
        if n_tokens <= 0 or n_tokens % context_len:
            raise StoreError(f"n_tokens ({n_tokens}) must be a positive multiple of context_len ({context_len})")
        if chunk_tokens is None:
            chunk_tokens = schema.chunk_tokens_for(d_mlp, context_len)
        if chunk_tokens <= 0 or chunk_tokens % context_len:
            raise StoreError(f"chunk_tokens ({chunk_tokens}) must be a positive multiple of "
                             f"context_len ({context_len})")
        wanted = {
            "schema_version": schema.SCHEMA_VERSION,
            "model_config": dict(model_config),
            "hooks": list(hooks),
            "n_tokens": int(n_tokens),
            "context_len": int(context_len),
            "chunk_tokens": int(chunk_tokens),
            "tokenizer_hash": sha256_text(tokenizer_json),
            "dense": bool(dense),
        }
        existing = read_manifest(path) if path.exists() else None
        if existing is None and path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(f"{path} exists and is not a neurobrowse store; choose another --out or remove it")
        if existing is not None:
            if existing.get("schema_version") != schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{path} is a store of schema version {existing.get('schema_version')}, this neurobrowse "
                    f"writes version {schema.SCHEMA_VERSION}; record into a new --out"
                )
            from store.format.manifest import validate_manifest

            validate_manifest(existing, path)  # a damaged manifest is named, not resumed into
            full = {**manifest, **wanted}

            def have(k):
                return existing.get(k, _RESUME_DEFAULTS.get(k))

            diffs = [k for k in _RESUME_KEYS if k in full and json.dumps(have(k), sort_keys=True)
                     != json.dumps(full[k], sort_keys=True)]
            if diffs and not writer_started(path):
                import shutil  # nothing was recorded yet: start again with the new arguments

                shutil.rmtree(path)
                return cls.create_or_resume(path, model_config=model_config, hooks=hooks, n_tokens=n_tokens,
                                            context_len=context_len, tokenizer_json=tokenizer_json,
                                            manifest=manifest, chunk_tokens=chunk_tokens, fsync=fsync)
            if diffs:
                detail = "; ".join(f"{k}: store has {have(k)!r}, asked {full[k]!r}" for k in diffs)
                raise StoreError(
                    f"{path} was recorded with other arguments ({detail}); rerun with the original arguments "
                    f"to resume it, or record into a new --out"
                )
            group = zarr.open_group(LocalStore(path), mode="r+")
            writer = cls(path, group, dict(existing), fsync=fsync)
        else:
            full = {
                **manifest,
                **wanted,
                "run_uuid": str(uuid.uuid4()),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "code_version": manifest.get("code_version", code_version()),
                "complete": False,
            }
            for k in schema.MANIFEST_KEYS:
                full.setdefault(k, None)
            path.mkdir(parents=True, exist_ok=True)
            group = zarr.open_group(LocalStore(path), mode="a", zarr_format=3)
            group.attrs[schema.ATTRS_KEY] = full  # the manifest first: it is what makes a resume possible
            writer = cls(path, group, full, fsync=fsync)
        writer._ensure_arrays(tokenizer_json)
        if writer.manifest.get("complete"):
            # the record command run again on a finished store: read every chunk, so that a damaged one
            # (the advice of every checksum error) is written again
            writer.rechecked = writer.recheck()
            if writer.has_pending():
                writer._set_complete(False)  # a chunk was lost, damaged or removed: rewrite it, then finish again
        return writer

    @classmethod
    def attach(cls, path: str | Path, fsync: bool = True) -> "StoreWriter":
        """Open an existing store for writing chunks (no creation); for extra writer processes."""
        path = Path(path).absolute()
        manifest = read_manifest(path)
        if manifest is None:
            raise StoreError(f"{path} is not a neurobrowse store; create it with `neurobrowse record`")
        return cls(path, zarr.open_group(LocalStore(path), mode="r+"), manifest, fsync=fsync)

    # ---- layout --------------------------------------------------------------------------------
    @property
    def per_token_arrays(self) -> list[str]:
        """Every array with one row per token, in the order a chunk is written (no hooks when not dense)."""
        return [schema.TOKENS, schema.DOC_STARTS, *(self.hooks if self.dense else [])]

    def chunk_rows(self, chunk_index: int) -> tuple[int, int]:
        """[start, stop) token rows of a chunk (the last one may be shorter)."""
        start = chunk_index * self.chunk_tokens
        return start, min(self.n_tokens, start + self.chunk_tokens)

    def _spec(self, name: str) -> tuple[tuple[int, ...], str, tuple[int, ...], tuple[str, ...]]:
        """shape, dtype, chunks, dimension names of a per-token array."""
        if name == schema.TOKENS:
            return (self.n_tokens,), "int32", (self.chunk_tokens,), (schema.TOKEN_DIM,)
        if name == schema.DOC_STARTS:
            return (self.n_tokens,), "uint8", (self.chunk_tokens,), (schema.TOKEN_DIM,)
        if name in self.hooks and self.dense:
            return ((self.n_tokens, self.d_mlp), "float16", (self.chunk_tokens, self.d_mlp),
                    (schema.TOKEN_DIM, schema.NEURON_DIM))
        raise StoreError(f"{self.path} has no per-token array {name!r}; it has {', '.join(self.per_token_arrays)}")

    def _create(self, name: str, shape, dtype: str, chunks, dims, fill_value=0,
                checksum_only: bool = False) -> zarr.Array:
        """Create an array unless it exists with this shape and dtype (resume after a kill)."""
        arr = self._existing(name)
        if arr is not None:
            arr = arr.with_config(schema.ARRAY_CONFIG)  # runtime config: not stored in the metadata
            if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != dtype:
                raise StoreError(f"array {name!r} in {self.path} has shape {arr.shape} {arr.dtype}, expected "
                                 f"{tuple(shape)} {dtype}; the store is damaged, record into a new --out")
            self._arrays[name] = arr
            return arr
        arr = self.group.create_array(
            name, shape=shape, dtype=dtype, chunks=chunks,
            compressors=schema.dense_codecs() if checksum_only else schema.codecs(dtype),
            fill_value=fill_value, dimension_names=dims, config=schema.ARRAY_CONFIG,
        )
        self._arrays[name] = arr
        return arr

    def _existing(self, name: str) -> zarr.Array | None:
        """The array ``name`` when it exists; None when not, or when its zarr.json is garbage (truncated by a
        crash, overwritten): then that file is removed, and the caller writes it again from the manifest (its
        chunk files stay: each is checked against its completion marker before it counts as written)."""
        try:
            return self.group[name]
        except KeyError:
            return None
        except (ValueError, TypeError) as e:  # not an array's metadata: a JSONDecodeError, a bad field
            meta = self.path / name / "zarr.json"
            print(f"note: the metadata of {name!r} ({meta}) is damaged ({type(e).__name__}); writing it again",
                  file=sys.stderr, flush=True)
            meta.unlink(missing_ok=True)
            self.group = zarr.open_group(LocalStore(self.path), mode="r+")
            return None

    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.group[name].with_config(schema.ARRAY_CONFIG)
        return self._arrays[name]

    def _marker(self, name: str, n: int) -> zarr.Array:
        """The completion-marker array of ``name`` (uint64; a store of the first release keeps its uint8 one)."""
        path = schema.done_path(name)
        arr = self._existing(path)
        if arr is not None and str(arr.dtype) == chunkio.LEGACY_MARKER_DTYPE and tuple(arr.shape) == (n,):
            self._arrays[path] = arr.with_config(schema.ARRAY_CONFIG)
            return self._arrays[path]
        return self._create(path, (n,), chunkio.MARKER_DTYPE, (1,), (schema.marker_dim(name),), checksum_only=True)

    def _ensure_arrays(self, tokenizer_json: str) -> None:
        for name in self.per_token_arrays:
            shape, dtype, chunks, dims = self._spec(name)
            self._create(name, shape, dtype, chunks, dims, checksum_only=name in self.hooks)
            self._marker(name, self.n_chunks)
        raw = np.frombuffer(tokenizer_json.encode("utf-8"), dtype=np.uint8)  # [byte]
        tok = self._create(schema.TOKENIZER_JSON, raw.shape, "uint8", raw.shape, ("byte",))
        self._marker(schema.TOKENIZER_JSON, 1)
        if not self._marker_values(schema.done_path(schema.TOKENIZER_JSON), 1)[0]:
            tok[:] = raw
            self._flush(schema.TOKENIZER_JSON, (0,))
            self._set_marker(schema.done_path(schema.TOKENIZER_JSON), 0, 1)

    # ---- writing -------------------------------------------------------------------------------
    def _chunk_file(self, name: str, coords: tuple[int, ...]) -> Path:
        key = self._array(name).metadata.encode_chunk_key(coords)
        return self.path / name / key

    def _flush(self, name: str, coords: tuple[int, ...]) -> None:
        if self.fsync:
            fsync_path(self._chunk_file(name, coords))

    def pending_chunks(self, array_name: str) -> list[int]:
        """Chunk indices of a per-token array not yet safely written: no marker, or a file that is
        missing, of the wrong size, or whose checksum is not the one its marker recorded (a chunk
        damaged, truncated or moved since). Cheap: a stat and a 4-byte read per chunk; ``recheck``
        reads every byte."""
        marks = self._marker_values(schema.done_path(array_name), self.n_chunks)  # [chunk]
        size = self._chunk_file_size(array_name)
        out = []
        for i in range(self.n_chunks):
            if not marks[i]:
                out.append(i)
                continue
            crc = chunkio.stored_crc(self._chunk_file(array_name, self._coords(array_name, i)), size)
            want = chunkio.marker_crc(marks[i])
            if crc is None or (want is not None and crc != want):
                out.append(i)
        return out

    def recheck(self, progress=None) -> dict[str, list[int]]:
        """Read every marked chunk of every per-token array whole and check its Crc32c and its marker;
        clear the marker of each bad one (so it is written again) and return them per array.
        ``progress``: a callable(bytes read) for a progress bar."""
        bad: dict[str, list[int]] = {}
        for name in self.per_token_arrays:
            marker = schema.done_path(name)
            marks = self._marker_values(marker, self.n_chunks)
            for i in range(self.n_chunks):
                if not marks[i]:
                    continue
                f = self._chunk_file(name, self._coords(name, i))
                crc = chunkio.file_crc_ok(f)
                want = chunkio.marker_crc(marks[i])
                if progress is not None:
                    progress(f.stat().st_size if f.is_file() else 0)
                if crc is None or (want is not None and crc != want):
                    chunkio.clear_marker(self.path, marker, i)
                    bad.setdefault(name, []).append(i)
        if bad and self.manifest.get("complete"):
            self._set_complete(False)
        return bad

    def _coords(self, name: str, chunk_index: int) -> tuple[int, ...]:
        return (chunk_index,) + (0,) * (len(self._spec(name)[0]) - 1)

    def _chunk_file_size(self, name: str) -> int | None:
        """Bytes of every chunk file of a per-token array when fixed (uncompressed layout), else None."""
        if self._layout(name) != "raw":
            return None
        _shape, dtype, chunks, _dims = self._spec(name)
        return chunkio.raw_size(dtype, chunks)

    def pending_all(self) -> list[int]:
        """Chunk indices pending in any per-token array (a chunk of tokens the recorder must run)."""
        out: set[int] = set()
        for name in self.per_token_arrays:
            out.update(self.pending_chunks(name))
        return sorted(out)

    def has_pending(self) -> bool:
        if self.pending_all():
            return True
        return any(self._logit_pending(layer) for layer in self.layers)

    def write_chunk(self, array_name: str, chunk_index: int, data: np.ndarray) -> None:
        """Write one whole chunk of a per-token array, flush it to disk, then set its marker.

        data: [rows] for tokens / doc_starts, [rows, d_mlp] for a hook; rows = chunk_tokens except
        for the last chunk. Rewriting a chunk that exists replaces it (same bytes on a resume).
        """
        shape, dtype, _, _ = self._spec(array_name)
        if not 0 <= chunk_index < self.n_chunks:
            raise StoreError(f"chunk {chunk_index} is outside {array_name!r} (0..{self.n_chunks - 1})")
        start, stop = self.chunk_rows(chunk_index)
        want = (stop - start,) + tuple(shape[1:])
        data = np.asarray(data)
        if data.shape != want:
            raise StoreError(f"chunk {chunk_index} of {array_name!r} must have shape {want}, got {data.shape}")
        arr = self._array(array_name)
        coords = (chunk_index,) + (0,) * (len(shape) - 1)
        layout = self._layout(array_name)
        if layout is not None:
            level = arr.metadata.codecs[1].level if layout == "zstd" else 0
            payload = chunkio.encode(data, dtype, arr.chunks, layout, level)
            f = self._chunk_file(array_name, coords)
            if f.parent not in self._dirs:
                f.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(f.parent)
            crc = chunkio.write_file(f, payload, fsync=self.fsync)
            value = chunkio.marker_value(crc)
        else:
            arr[start:stop] = data.astype(dtype, copy=False)
            self._flush(array_name, coords)
            value = chunkio.marker_value(chunkio.stored_crc(self._chunk_file(array_name, coords)) or b"\0" * 4)
        self._set_marker(schema.done_path(array_name), chunk_index, value)

    # Direct chunk writes (store.format.chunkio). Measured (benchmarks/bench_store.py --parts writer): zarr's
    # setitem for an 8 MiB uncompressed chunk ran at ~0.3-0.4x np.save of the same bytes (event-loop
    # hand-offs, buffer copies); writing the identical file bytes directly runs at np.save speed.
    # Only for arrays in a layout chunkio knows (schema.chunk_codec_layout); zarr reads them unchanged.
    def _layout(self, name: str) -> str | None:
        if name not in self._direct:
            self._direct[name] = schema.chunk_codec_layout(self._array(name))
        return self._direct[name]

    def _marker_values(self, marker_name: str, n: int) -> np.ndarray:
        """uint64 [n] of a marker array; a marker file that is empty or damaged (a kill while it was
        being written) counts as 0, so its chunk is simply written again."""
        arr = self._array(marker_name)
        if self._layout(marker_name) != "raw":
            return arr[:].astype(np.uint64)
        return chunkio.read_markers(self.path, marker_name, n, str(arr.dtype))

    def _set_marker(self, marker_name: str, index: int, value) -> None:
        """Set a completion marker to ``value`` (chunkio.marker_value of the chunk's checksum, or 1 where
        none is recorded); written after the chunk it marks is on disk."""
        arr = self._array(marker_name)
        if str(arr.dtype) == chunkio.LEGACY_MARKER_DTYPE:
            value = 1
        if self._layout(marker_name) == "raw":
            chunkio.write_marker(self.path, marker_name, index, value, str(arr.dtype))
        else:
            arr[index] = value

    def _logit_pending(self, layer: int) -> bool:
        name = schema.logit_path(layer)
        try:
            self._array(schema.done_path(name))
        except KeyError:
            return True
        return not self._marker_values(schema.done_path(name), 1)[0]

    def logit_pending(self, layer: int) -> bool:
        """True when the logit effects of ``layer`` are not written yet."""
        return self._logit_pending(layer)

    def write_logit_effects(self, layer: int, up_tokens: np.ndarray, up_values: np.ndarray,
                            down_tokens: np.ndarray, down_values: np.ndarray) -> None:
        """Per-neuron direct logit effects of one layer, each [d_mlp, K_LOGIT]: the tokens whose logits
        a neuron raises most (up, values descending) and lowers most (down, values ascending)."""
        base = schema.logit_path(layer)
        data = {"up_tokens": up_tokens, "up_values": up_values, "down_tokens": down_tokens,
                "down_values": down_values}
        for key in schema.LOGIT_ARRAYS:
            a = np.asarray(data[key])
            if a.ndim != 2 or a.shape[0] != self.d_mlp:
                raise StoreError(f"logit effects {key} of layer {layer} must be [d_mlp={self.d_mlp}, k], got {a.shape}")
            dtype = schema.LOGIT_DTYPES[key]
            arr = self._create(f"{base}/{key}", a.shape, dtype, a.shape, schema.LOGIT_DIMS)
            arr[:] = a.astype(dtype, copy=False)
            self._flush(f"{base}/{key}", (0, 0))
        self._marker(base, 1)
        self._set_marker(schema.done_path(base), 0, 1)

    # ---- finishing -----------------------------------------------------------------------------
    def _set_complete(self, value: bool) -> None:
        self.manifest = {**self.manifest, "complete": bool(value)}
        self.group.attrs[schema.ATTRS_KEY] = self.manifest

    def update_manifest(self, **fields) -> None:
        """Add or change manifest fields (not the ones a resume checks)."""
        bad = set(fields) & (set(_RESUME_KEYS) | {"complete", "schema_version", "run_uuid"})
        if bad:
            raise StoreError(f"manifest fields {sorted(bad)} cannot be changed after creation")
        self.manifest = {**self.manifest, **fields}
        self.group.attrs[schema.ATTRS_KEY] = self.manifest

    def finish(self) -> None:
        """Verify every marker and chunk file, then set ``complete`` (the last write of a recording)."""
        missing = {name: self.pending_chunks(name) for name in self.per_token_arrays}
        missing = {k: v for k, v in missing.items() if v}
        lost_logits = [layer for layer in self.layers if self._logit_pending(layer)]
        if missing or lost_logits:
            parts = [f"{name}: chunks {v[:8]}{'...' if len(v) > 8 else ''}" for name, v in missing.items()]
            parts += [f"logit effects of layer {layer}" for layer in lost_logits]
            raise StoreError(f"{self.path} is not finished ({'; '.join(parts)}); run the record command again to "
                             f"resume: {schema.record_command(self.manifest, self.path)}")
        self._set_complete(True)
