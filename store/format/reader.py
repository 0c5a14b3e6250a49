"""Reading an activation store: the manifest, dense arrays, the index of one neuron.

``Store.open(path)`` opens the Zarr group through ``CheckedLocalStore``, a LocalStore that refuses
to hand zarr a damaged chunk: a chunk whose Crc32c does not match (random bytes, truncation) or a
chunk file that is missing (zarr would silently read fill_value) raises CorruptChunkError naming
the array and the chunk key. Every read through a Store - ``activations(hook)[...]``, the index,
xarray or dask on ``store.group`` - is checked this way.

Reading one neuron's page (``Store.neuron``) touches only the index arrays (chunked along the
neuron axis) and fetches them in one concurrent batch, so it stays fast on any store size.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.storage import LocalStore

from store import schema
from store.format import chunkio, seal
from store.measures import columns
from store.errors import CorruptChunkError, StoreError
from store.format.manifest import validate_manifest
from store.schema import read_manifest
from store.measures.snippets import (
    Snippet, build_snippets, distinct_names, fill_shared_windows, has_distinct, index_window, window_positions,
)
from store.measures.tokens_display import readable_vocab

_CHUNK_CACHE = 256  # decoded index chunks kept (about 10 neuron-chunk groups of one page's arrays)
_TOKEN_CACHE_BYTES = 64 * 2**20  # decoded token chunks kept for the derived token windows (a 16M-token store whole)
_TOKEN_WHOLE_READ = 256  # a gather touching more token chunks than this reads the whole tokens array
_CHUNK_KEY = re.compile(r"^(.*)/c((?:/\d+)*)$")


class CheckedLocalStore(LocalStore):
    """A LocalStore whose chunk reads fail loudly: missing chunk files, Crc32c mismatches and chunk files
    that are not the one their completion marker recorded raise CorruptChunkError with the array name
    and chunk key. Completion-marker arrays (done/...) are exempt from the missing check: an absent
    marker means "not written yet"."""

    def __init__(self, root, *, read_only: bool = True):
        super().__init__(root, read_only=read_only)
        self._array_info: dict[str, tuple] = {}  # array -> (strict, crc, marker dtype, checksum record)
        self._bounds: dict[str, int] = {}  # array -> the most bytes one of its chunk files can hold (-1: unknown)

    def _info_from_meta(self, array: str, meta_bytes, marker_meta) -> tuple[bool, bool, str | None]:
        crc = False
        if meta_bytes is not None:
            try:
                meta = json.loads(meta_bytes.to_bytes())
                codecs = meta.get("codecs") or []
                crc = bool(codecs) and codecs[-1].get("name") == "crc32c"
            except (ValueError, AttributeError):
                crc = False
        marker_dtype = None
        if marker_meta is not None:
            try:
                marker_dtype = json.loads(marker_meta.to_bytes()).get("data_type")
            except (ValueError, AttributeError):
                marker_dtype = None
        # an array whose metadata vanished (an index folder removed under a reader) is strict too: zarr
        # has its metadata cached and would read fill values
        strict = not array.startswith(schema.DONE_GROUP + "/")
        record = None  # index arrays: (chunk checksums, shape, chunks) of their checksum record, or why it is bad
        if array.startswith(schema.INDEX_GROUP + "/") and meta_bytes is not None:
            try:
                meta = json.loads(meta_bytes.to_bytes())
                crcs = seal.check_record(meta, index_record_name(array))
                if crcs is not None:
                    record = (crcs, meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"])
            except seal.DamagedRecord as e:
                record = str(e)
            except (ValueError, AttributeError, KeyError, TypeError):
                record = None
        return strict, crc, marker_dtype, record

    def _check(self, key: str, value, byte_range, info: tuple):
        strict, crc, marker_dtype, record = info
        array = _CHUNK_KEY.match(key).group(1)
        chunk_key = key[len(array) + 1:]
        if value is None:
            if strict:
                raise CorruptChunkError(f"array {array!r}: chunk {chunk_key!r} is missing ({self.root / key} does not "
                                        f"exist); {damaged_advice(array, self.root)}")
            return value
        if crc and byte_range is None:
            raw = value.as_numpy_array()
            stored = raw[-4:].tobytes()
            if raw.size < 4 or chunkio.crc32c(raw[:-4]) != stored:
                raise CorruptChunkError(
                    f"array {array!r}: chunk {chunk_key!r} fails its Crc32c checksum ({self.root / key}, "
                    f"{raw.size} bytes: damaged or truncated); {damaged_advice(array, self.root)}")
            if isinstance(record, str):
                raise CorruptChunkError(f"array {array!r} is damaged: {record}; {damaged_advice(array, self.root)}")
            if record is not None:
                coords = tuple(int(x) for x in chunk_key.split("/")[1:])
                if seal.expected_crc(record[0], record[1], record[2], coords) != stored:
                    raise CorruptChunkError(
                        f"array {array!r}: chunk {chunk_key!r} is not the chunk written there ({self.root / key}: "
                        f"damaged, or swapped with another chunk or array); {damaged_advice(array, self.root)}")
            if marker_dtype is not None:
                index = int(chunk_key.split("/")[1])
                want = chunkio.marker_crc(chunkio.read_marker(self.root, schema.done_path(array), index, marker_dtype))
                if want is not None and want != stored:
                    raise CorruptChunkError(
                        f"array {array!r}: chunk {chunk_key!r} is not the chunk its completion marker recorded "
                        f"({self.root / key}: moved or copied from elsewhere); {damaged_advice(array, self.root)}")
        return value

    def _marker_meta_key(self, array: str) -> str | None:
        if array.startswith((schema.DONE_GROUP + "/", schema.INDEX_GROUP + "/", schema.LOGIT_GROUP + "/")):
            return None
        return f"{schema.done_path(array)}/zarr.json"

    def _precheck(self, key: str, array: str, meta) -> None:
        """Before a chunk file is read: refuse one that is not a regular file (a FIFO would block the read,
        a device never end it) or is larger than the array's chunk can ever be (read whole by zarr)."""
        import stat

        try:
            st = os.stat(self.root / key)
        except OSError:
            return  # missing: _check names it
        why = None
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file (a FIFO, device or socket)"
        elif meta is not None:
            bound = self._bounds.get(array)
            if bound is None:
                try:
                    doc = json.loads(meta.to_bytes())
                    bound = chunkio.max_chunk_bytes(doc["data_type"], doc["chunk_grid"]["configuration"]["chunk_shape"],
                                                    None)
                except (ValueError, KeyError, TypeError, AttributeError):
                    bound = -1
                self._bounds[array] = bound
            if bound >= 0 and st.st_size > bound:
                why = f"{st.st_size:,} bytes, more than its array's chunk can ever take ({bound:,})"
        if why:
            raise CorruptChunkError(f"array {array!r}: chunk {key[len(array) + 1:]!r} is {why} ({self.root / key}); "
                                    f"{damaged_advice(array, self.root)}")

    async def get(self, key, prototype=None, byte_range=None):
        m = _CHUNK_KEY.match(key)
        if m is None:
            return await super().get(key, prototype, byte_range)
        array = m.group(1)
        meta = None
        if array not in self._array_info:
            meta = await super().get(f"{array}/zarr.json", prototype)
            mk = self._marker_meta_key(array)
            marker = await super().get(mk, prototype) if mk else None
            self._array_info[array] = self._info_from_meta(array, meta, marker)
        if array not in self._bounds and meta is None:
            meta = await super().get(f"{array}/zarr.json", prototype)
        self._precheck(key, array, meta)
        value = await super().get(key, prototype, byte_range)
        return self._check(key, value, byte_range, self._array_info[array])

    def get_sync(self, key, *, prototype=None, byte_range=None):
        m = _CHUNK_KEY.match(key)
        if m is None:
            return super().get_sync(key, prototype=prototype, byte_range=byte_range)
        array = m.group(1)
        meta = None
        if array not in self._array_info:
            meta = super().get_sync(f"{array}/zarr.json", prototype=prototype)
            mk = self._marker_meta_key(array)
            marker = super().get_sync(mk, prototype=prototype) if mk else None
            self._array_info[array] = self._info_from_meta(array, meta, marker)
        if array not in self._bounds and meta is None:
            meta = super().get_sync(f"{array}/zarr.json", prototype=prototype)
        self._precheck(key, array, meta)
        value = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        return self._check(key, value, byte_range, self._array_info[array])


@dataclass
class NeuronView:
    """Everything the browser / `show` needs for one neuron, read from the index (no dense pass)."""

    hook: str
    layer: int
    neuron: int
    stats: dict
    top: list[Snippet]
    bottom: list[Snippet]
    samples: dict[str, list[Snippet]]
    hist_edges: np.ndarray  # [H + 1] float32
    hist_counts: np.ndarray  # [H] int64
    top_tokens: list[tuple[str, float, int]]  # (token, mean activation, count)
    logit_up: list[tuple[str, float]] = field(default_factory=list)
    logit_down: list[tuple[str, float]] = field(default_factory=list)
    explanation: str = ""  # the automatic rule explanation in words (store.measures.explain), '' when none
    window: tuple[int, int] = (0, 0)  # (before, after) tokens of the index's windows
    context_len: int = 0  # tokens per recorded context
    distinct: bool = True  # top / bottom hold one firing per context
    # a feature's page: the neurons its decoder direction loads on; a neuron's page: the features of the
    # store's dictionaries that read from it (encoder weight). Dicts of hook, unit, weight (Store.related_units)
    related: list[dict] = field(default_factory=list)


def _direct_layout(arr: zarr.Array) -> str | None:
    """``schema.chunk_codec_layout`` for arrays chunked along their first axis only (what the
    readers here decode), else None (then zarr reads it)."""
    return schema.chunk_codec_layout(arr) if tuple(arr.chunks[1:]) == tuple(arr.shape[1:]) else None


def index_record_name(array: str) -> str | None:
    """The name an index array's checksum record binds it to ('HOOK/ARRAY', store.format.seal) for its
    path in a store ('index/HOOK/ARRAY' or 'index/_rebuild/HOOK/ARRAY'); None for other arrays."""
    parts = array.split("/")
    if parts[:2] == [schema.INDEX_GROUP, schema.REBUILD_GROUP]:
        parts = parts[:1] + parts[2:]
    if len(parts) == 3 and parts[0] == schema.INDEX_GROUP:
        return f"{parts[1]}/{parts[2]}"
    return None


def rerecord_out(root) -> Path:
    """A new folder beside the store at ``root`` to record it again into (``STORE-rerecorded``, numbered
    when that exists)."""
    root = Path(root)
    out, i = root.with_name(root.name + "-rerecorded"), 1
    while out.exists():
        i += 1
        out = root.with_name(f"{root.name}-rerecorded{i}")
    return out


def index_advice(root, manifest: dict | None = None) -> str:
    """How to rebuild a damaged index of the store at ``root``: ``neurobrowse index --force`` when it keeps
    its dense activations; else (recorded with --index --dense none) what is lost and the record command
    that rebuilds it into a new folder (the index cannot be made again from this store)."""
    where = shlex.quote(str(root))
    if manifest is None:
        try:
            manifest = read_manifest(root) or {}
        except StoreError:
            manifest = {}
    if manifest.get("dense", True):
        return f"re-index it: `neurobrowse index --force {where}`"
    cmd = schema.record_command(manifest, rerecord_out(root))
    return (f"this store keeps no dense activations (recorded with --index --dense none), so its index cannot be "
            f"made again from it: the damaged index's numbers are lost (the tokens, logit effects and labels are "
            f"not). Record it again into a new folder, which rebuilds the index: `{cmd}`")


def damaged_advice(name: str, root) -> str:
    """The command that repairs a damaged chunk of array ``name`` in the store at ``root``."""
    where = shlex.quote(str(root))
    if name.startswith(schema.INDEX_GROUP + "/"):
        return index_advice(root)
    return (f"run `neurobrowse verify --repair {where}` (it clears the markers of the bad chunks), then the "
            f"store's record command again to rewrite them")


def _decode_chunk_file(root: Path, name: str, arr: zarr.Array, chunk_index: int, layout: str = "zstd",
                       expect_crc: bytes | None = None,
                       recorded_by: str = "its completion marker recorded") -> np.ndarray:
    """One whole chunk [chunk_rows, ...] of an array laid out as _direct_layout says, read and checked
    by store.format.chunkio without zarr's event loop. For index pages (~20 small zstd chunks) the loop's
    thread hand-offs cost more than the reads on a busy 2-core machine; a dense activation chunk
    ("raw") is read straight into the result's buffer (2 ms instead of zarr's 4.7 ms per 8 MB
    chunk, benchmarks/bench_index.py)."""
    coords = (chunk_index,) + (0,) * (arr.ndim - 1)
    return chunkio.read_file(chunkio.chunk_path(root, name, coords), layout, arr.dtype, arr.chunks, name,
                             chunkio.chunk_key(coords), damaged_advice(name, root), expect_crc, recorded_by)


# index arrays read per neuron (one neuron-axis chunk each) by Store.neuron
_PAGE_ARRAYS = (
    "top_values", "top_positions", "top_context_tokens", "top_context_acts",
    "bottom_values", "bottom_positions", "bottom_context_tokens", "bottom_context_acts",
    "sample_positions", "sample_values", "sample_context_tokens", "sample_context_acts",
    "hist_counts", "quantile_edges", "top_token_ids", "top_token_means", "top_token_counts",
)


class Store:
    """A recorded activation store (read-only). Open with ``Store.open(path)``."""

    def __init__(self, path: Path, group: zarr.Group, manifest: dict):
        self.path = path
        self.group = group  # the root zarr group, read through CheckedLocalStore
        self.manifest = manifest
        self._arrays: dict[str, zarr.Array] = {}
        self._tables: dict[str, dict[str, np.ndarray]] = {}
        self._indexed: set[str] = set()
        self._direct: dict[str, str | None] = {}  # array name -> _direct_layout (None: through zarr)
        self._chunk_cache: dict[tuple[str, int], np.ndarray] = {}  # insertion-ordered LRU-ish cache
        self._token_chunks: dict[int, np.ndarray] = {}  # decoded token chunks (the derived windows), same kind
        self._token_cache_bytes = 0
        self._stored: dict[str, bool] = {}  # index array name -> whether it is on disk (derived ones may not be)
        self._hist_edges: dict[str, np.ndarray] = {}  # per hook: shared histogram edges [H + 1]
        self._attrs: dict[str, dict] = {}  # per hook: the attributes of its finished index
        self._marker_dtypes: dict[str, str] = {}  # per-token array -> dtype of its completion markers
        self._index_gens: dict[str, tuple | None] = {}  # hook -> identity of the index folder the caches hold
        self._checked: set[str] = set()  # hooks whose index passed check_index
        self._records: dict[str, tuple] = {}  # index array -> (chunk checksums, shape, chunks) of its record
        self._features: dict[str, Path] | None = None  # feature hook -> dictionary folder (store.format.dictionary)
        self._dictionaries: dict[str, object] = {}  # feature hook -> loaded store.format.dictionary.Dictionary

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        path = Path(path).absolute()
        if not path.exists():
            raise StoreError(f"no store at {path}; create one with `neurobrowse record CHECKPOINT --out {path}`")
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not a store directory")
        manifest = read_manifest(path)
        if manifest is None:
            raise StoreError(f"{path} is not a neurobrowse store (no {schema.ATTRS_KEY!r} manifest in zarr.json)")
        version = manifest.get("schema_version")
        if version != schema.SCHEMA_VERSION:
            raise StoreError(
                f"{path} has store schema version {version}; this neurobrowse reads version "
                f"{schema.SCHEMA_VERSION}. Re-record it with this version (`neurobrowse record`)"
            )
        validate_manifest(manifest, path)  # every field a reader uses, once (store.format.manifest)
        try:
            group = zarr.open_group(CheckedLocalStore(path, read_only=True), mode="r")
        except (OSError, ValueError) as e:
            raise StoreError(f"{path} cannot be opened as a Zarr v3 group: {e}") from e
        return cls(path, group, manifest)

    def refresh(self) -> None:
        """Re-read the manifest (another process may have finished recording or indexing)."""
        m = read_manifest(self.path)
        if m is not None:
            self.manifest = validate_manifest(m, self.path)
        self._arrays.clear()
        self._tables.clear()
        self._indexed.clear()
        self._hist_edges.clear()
        self._attrs.clear()
        self._chunk_cache.clear()
        self._token_chunks.clear()
        self._token_cache_bytes = 0
        self._stored.clear()
        self._checked.clear()
        self._records.clear()
        self._features = None
        self._dictionaries.clear()

    # ---- manifest ------------------------------------------------------------------------------
    @property
    def run_uuid(self) -> str:
        return self.manifest["run_uuid"]

    @property
    def model_config(self) -> dict:
        return self.manifest["model_config"]

    @property
    def hooks(self) -> list[str]:
        """Every hook one can browse: the recorded ones, then the features of the store's dictionaries
        (store.format.dictionary: ``{source hook}.sae.{name}``), each after the others."""
        return self.recorded_hooks + self.feature_hooks

    @property
    def recorded_hooks(self) -> list[str]:
        """The MLP hooks the recording wrote (its manifest's)."""
        return list(self.manifest["hooks"])

    @property
    def feature_hooks(self) -> list[str]:
        """The features of the store's complete dictionaries (folders under dictionaries/)."""
        if self._features is None:
            from store.format.dictionary import list_dictionaries

            self._features = {h: p for h, p in list_dictionaries(self.path).items()
                              if schema.feature_source(h)[0] in self.recorded_hooks}
        return list(self._features)

    def dictionary(self, hook: str):
        """The store.format.dictionary.Dictionary behind a feature hook (loaded once, checked against its source)."""
        if hook not in self._dictionaries:
            from store.format.dictionary import load_dictionary

            if hook not in self.feature_hooks:
                raise StoreError(f"{self.path} has no dictionary {hook!r}; it has "
                                 f"{', '.join(self.feature_hooks) or 'none'}")
            self._dictionaries[hook] = load_dictionary(self._features[hook], expect_d_in=self.d_mlp,
                                                       what=schema.feature_source(hook)[0])
        return self._dictionaries[hook]

    def n_units(self, hook: str) -> int:
        """Units of a hook: the layer's neurons (d_mlp), or a dictionary's features (d_sae)."""
        if schema.is_feature_hook(hook):
            return self.dictionary(hook).d_sae
        return self.d_mlp

    def is_features(self, hook: str) -> bool:
        return schema.is_feature_hook(hook)

    @property
    def layers(self) -> list[int]:
        return sorted({schema.parse_hook_name(h)[0] for h in self.hooks})

    @property
    def d_mlp(self) -> int:
        return int(self.model_config["d_mlp"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    @property
    def context_len(self) -> int:
        return int(self.manifest["context_len"])

    @property
    def chunk_tokens(self) -> int:
        return int(self.manifest["chunk_tokens"])

    @property
    def n_chunks(self) -> int:
        return schema.n_chunks(self.n_tokens, self.chunk_tokens)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def dense(self) -> bool:
        """Whether the dense activations are kept (False: recorded with ``--index --dense none``, the
        store holds the tokens, the logit effects and the index)."""
        return bool(self.manifest.get("dense", True))

    @property
    def per_token_arrays(self) -> list[str]:
        """The arrays with one row per token: tokens, doc_starts and (when kept) each hook's activations."""
        return [schema.TOKENS, schema.DOC_STARTS, *(self.recorded_hooks if self.dense else [])]

    def require_dense(self, what: str) -> None:
        """Raise StoreError unless the dense activations are kept; ``what`` needs them."""
        if not self.dense:
            cmd = self.resume_command().replace("--dense none", "--dense keep")
            raise StoreError(f"{self.path} has no dense activations (recorded with --dense none), and {what} "
                             f"needs them; re-record it with --dense keep into a new --out: {cmd}")

    @property
    def act_fn(self) -> str:
        return str(self.model_config.get("act_fn", "?"))

    def resume_command(self) -> str:
        """The command that resumes this recording: the one it was recorded with, writing into the
        store's folder as opened now (a copied or moved store must not be resumed into its old folder)."""
        return schema.record_command(self.manifest, self.path)

    def require_complete(self) -> None:
        """Raise StoreError unless recording finished (for consumers that need every chunk)."""
        if not self.complete:
            raise StoreError(
                f"{self.path} is incomplete: recording stopped before the end "
                f"({self.done_chunks()}/{self.n_chunks} chunks written). Resume it with: {self.resume_command()}"
            )

    def done_chunks(self) -> int:
        """Chunks whose every per-token array has its completion marker. A marker file that is empty or
        damaged (a process killed while writing it) counts as not written, as the writer counts it."""
        marks = [chunkio.read_markers(self.path, schema.done_path(n), self.n_chunks,
                                      str(self._array(schema.done_path(n)).dtype))
                 for n in self.per_token_arrays]
        return int(np.logical_and.reduce([m.astype(bool) for m in marks]).sum())

    # ---- arrays --------------------------------------------------------------------------------
    def _array(self, name: str) -> zarr.Array:
        arr = self._arrays.get(name)
        if arr is None:
            try:
                arr = self.group[name]
            except KeyError:
                raise StoreError(f"{self.path} has no array {name!r}") from None
            except (ValueError, TypeError, OSError) as e:  # zarr.json that is not valid metadata
                fix = (f"re-index it: `neurobrowse index --force {self.path}`" if name.startswith(schema.INDEX_GROUP)
                       else "record the store again into a new --out")
                raise StoreError(f"{self.path}: the metadata of {name!r} ({self.path / name / 'zarr.json'}) is "
                                 f"damaged ({type(e).__name__}: {e}); {fix}") from None
            self._arrays[name] = arr
        return arr

    @property
    def tokens(self) -> zarr.Array:
        """int32 [token] token ids."""
        return self._array(schema.TOKENS)

    @property
    def doc_starts(self) -> zarr.Array:
        """uint8 [token], 1 where a document begins."""
        return self._array(schema.DOC_STARTS)

    def activations(self, hook: str) -> zarr.Array:
        """float16 [token, neuron] dense activations of a hook (chunks of chunk_tokens rows)."""
        self.check_hook(hook)
        if schema.is_feature_hook(hook):
            raise StoreError(f"{hook} is a dictionary's features: computed from {schema.feature_source(hook)[0]}, "
                             f"not stored; read them chunk by chunk with Store.read_chunk")
        self.require_dense(f"reading the activations of {hook}")
        return self._array(hook)

    def check_hook(self, hook: str) -> None:
        """Raise StoreError unless ``hook`` is one of the store's hooks."""
        if hook not in self.hooks:
            raise StoreError(f"{self.path} has no hook {hook!r}; recorded hooks: {', '.join(self.hooks)}")

    def read_chunk(self, name: str, chunk_index: int) -> np.ndarray:
        """One whole token chunk of a per-token array (tokens, doc_starts or a hook): [rows(, d_mlp)].
        Chunks in the plain layouts (dense activations: bytes + Crc32c, as the writer stores them;
        token ids: bytes + zstd + Crc32c) are read straight from their files (see
        ``_decode_chunk_file``: ~0.1 ms instead of ~0.6 ms through zarr for a token chunk); anything
        else goes through zarr. Either way a
        missing, truncated or damaged chunk raises CorruptChunkError naming the array and chunk key.
        A dictionary's features (a feature hook) are computed from its source hook's chunk: float16
        [rows, d_sae]."""
        if schema.is_feature_hook(name):
            src = schema.feature_source(name)[0]
            self.require_dense(f"computing the features of {name}")
            return self.dictionary(name).encode(self.read_chunk(src, chunk_index)).astype(np.float16)
        arr = self._array(name)
        start = chunk_index * self.chunk_tokens
        if not 0 <= start < self.n_tokens:
            raise StoreError(f"chunk {chunk_index} is outside {name!r} ({self.n_chunks} chunks)")
        stop = min(self.n_tokens, start + self.chunk_tokens)
        if name not in self._direct:
            self._direct[name] = _direct_layout(arr)
        if self._direct[name] is not None and arr.chunks[0] == self.chunk_tokens:
            expect = chunkio.marker_crc(self._marker(name, chunk_index))
            return _decode_chunk_file(self.path, name, arr, chunk_index, self._direct[name], expect)[:stop - start]
        return arr[start:stop]

    def _marker(self, name: str, chunk_index: int) -> int:
        """The completion marker of one chunk of a per-token array (0: not written)."""
        dtype = self._marker_dtypes.get(name)
        if dtype is None:
            dtype = self._marker_dtypes[name] = str(self._array(schema.done_path(name)).dtype)
        return chunkio.read_marker(self.path, schema.done_path(name), chunk_index, dtype)

    def hook_for(self, layer: int, hook: str | None = None) -> str:
        """The full hook name for a layer: ``hook`` may be 'hook_mid', a full name, or None (hook_post)."""
        name = hook if hook and hook.startswith("blocks.") else schema.hook_name(layer, hook or "hook_post")
        if name not in self.hooks:
            raise StoreError(f"{self.path} has no hook {name!r}; recorded hooks: {', '.join(self.hooks)}")
        return name

    # ---- tokenizer -----------------------------------------------------------------------------
    @cached_property
    def tokenizer_json(self) -> str:
        return bytes(self._array(schema.TOKENIZER_JSON)[:]).decode("utf-8")

    @cached_property
    def tokenizer(self):
        """The recording's tokenizers.Tokenizer (stored in the store, no checkpoint needed)."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)

    @cached_property
    def _vocab_strings(self) -> list[str]:
        vocab = {i: s for s, i in self.tokenizer.get_vocab(with_added_tokens=True).items()}
        size = max(int(self.model_config.get("d_vocab", 0)), max(vocab) + 1 if vocab else 0)
        return readable_vocab(vocab, size)

    @cached_property
    def explain_vocab(self):
        """store.measures.explain.Vocab of this recording's tokenizer (the token tables the rule search uses)."""
        from store.measures.explain import Vocab

        return Vocab.build(self._vocab_strings)

    def forget_index(self, hook: str) -> None:
        """Drop what was cached of index/{hook} (after it was rewritten or swapped)."""
        prefix = schema.index_path(hook) + "/"
        self._tables.pop(hook, None)
        for name in [n for n in self._arrays if n.startswith(prefix)]:
            del self._arrays[name]
            self._direct.pop(name, None)
        for key in [k for k in self._chunk_cache if k[0].startswith(prefix)]:
            del self._chunk_cache[key]
        for name in [n for n in self._stored if n.startswith(prefix)]:
            del self._stored[name]
        self._indexed.discard(hook)
        self._hist_edges.pop(hook, None)
        self._attrs.pop(hook, None)
        self._checked.discard(hook)
        for name in [n for n in self._records if n.startswith(prefix)]:
            del self._records[name]
        info = getattr(self.group.store, "_array_info", None)
        if isinstance(info, dict):  # the checked store's per-array records (the index may be a new one)
            for name in [n for n in info if n.startswith(prefix)]:
                del info[name]
            self.group.store._bounds.clear()

    @cached_property
    def _vocab_array(self) -> np.ndarray:
        """object [vocab + 1]: readable pieces, with '' at the end for padding / unknown ids."""
        return np.array(self._vocab_strings + [""], dtype=object)

    def _strings(self, ids) -> np.ndarray:
        """object array of readable pieces, same shape as ``ids`` (-1 or out of range -> '')."""
        va = self._vocab_array
        ids = np.asarray(ids, dtype=np.int64)
        return va[np.where((ids >= 0) & (ids < len(va) - 1), ids, len(va) - 1)]

    def token_strings(self, ids) -> list[str]:
        """Readable pieces for token ids ('Ġthe' -> ' the', 'Ċ' -> '⏎'); -1 (padding) -> ''."""
        return self._strings(np.asarray(ids).ravel()).tolist()

    # ---- logit effects -------------------------------------------------------------------------
    def logit_effects(self, layer: int, neuron: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        base = schema.logit_path(layer)
        try:
            arrs = [self._array(f"{base}/{k}") for k in schema.LOGIT_ARRAYS]
        except StoreError:
            return [], []
        ut, uv, dt, dv = _read_many([(a, (neuron,)) for a in arrs])
        return (list(zip(self.token_strings(ut), map(float, uv))),
                list(zip(self.token_strings(dt), map(float, dv))))

    # ---- the index -----------------------------------------------------------------------------
    def index_group_path(self, hook: str) -> str:
        return schema.index_path(hook)

    def index_state(self, hook: str) -> dict:
        """The attrs of index/{hook} (written by store.index), {} when there is no index."""
        meta = self.path / schema.index_path(hook) / "zarr.json"
        try:
            return dict(json.loads(meta.read_text()).get("attributes") or {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StoreError(f"{meta} is unreadable ({e}); re-index with `neurobrowse index --force {self.path}`") from e

    def is_indexed(self, hook: str) -> bool:
        """True when index/{hook} was finished (its ``complete`` attribute, written last) for this recording."""
        if hook in self._indexed:
            return True
        state = self.index_state(hook)
        ok = bool(state.get("complete")) and state.get("run_uuid", self.run_uuid) == self.run_uuid
        if ok:
            self._indexed.add(hook)  # only a positive answer is cached (an index can appear later)
        return ok

    def index_array(self, hook: str, name: str) -> zarr.Array:
        """One index array of ``hook``: a zarr array, or for the token windows (schema.INDEX_DERIVED) an
        array-like gathering them from the store's tokens when the index does not store them."""
        if name not in schema.INDEX_ARRAYS and name not in schema.EXPLAIN_ARRAYS:
            raise StoreError(f"{name!r} is not an index array; see store.schema.INDEX_ARRAYS")
        if name in schema.INDEX_DERIVED and not self._index_stores(hook, name):
            return WindowTokens(self, hook, name)
        if name in schema.INDEX_SHARED_WINDOWS and self._index_attrs(hook).get("shared_windows"):
            return SharedWindows(self, hook, name)
        try:
            return self._array(f"{schema.index_path(hook)}/{name}")
        except StoreError:
            raise StoreError(f"{self.path}: hook {hook!r} is not indexed (no {name!r}); "
                             f"run `neurobrowse index {self.path}`") from None

    def _index_attrs(self, hook: str) -> dict:
        if hook not in self._attrs:
            self._attrs[hook] = self.index_state(hook)
        return self._attrs[hook]

    def _index_stores(self, hook: str, name: str) -> bool:
        """Whether index/{hook} holds the array ``name`` on disk (indexes before schema.INDEX_DERIVED
        stored the token windows; newer ones derive them)."""
        key = f"{schema.index_path(hook)}/{name}"
        if key not in self._stored:
            self._stored[key] = (self.path / key / "zarr.json").is_file()
        return self._stored[key]

    def window_tokens(self, positions: np.ndarray, before: int, after: int) -> np.ndarray:
        """int32 [..., before + 1 + after] the token ids around each position (-1 for an empty
        position and past the ends of the store): what an index's *_context_tokens arrays hold."""
        q, valid = window_positions(positions, before, after, self.n_tokens)
        out = np.full(q.shape, -1, np.int32)
        out[valid] = self.tokens_at(q[valid])
        return out

    def tokens_at(self, positions: np.ndarray) -> np.ndarray:
        """int32 token ids at ``positions`` (int64 in 0..n_tokens-1, any order): read from the token
        chunks they fall in, or from the whole tokens array for a gather that touches many chunks.
        Decoded chunks are cached (up to _TOKEN_CACHE_BYTES: browsing a store of up to ~16M tokens
        ends up reading each token chunk once). Each chunk file's own Crc32c is checked (not its
        completion marker: one file read per chunk instead of two, as the passage reads do)."""
        q = np.asarray(positions, dtype=np.int64)
        if q.size == 0:
            return np.empty(q.shape, np.int32)
        if -1 in self._token_chunks:  # the whole array is cached
            return self._token_chunks[-1][q]
        ct = self.chunk_tokens
        chunk = q // ct
        need = np.unique(chunk)
        if need.size > _TOKEN_WHOLE_READ:
            return self._whole_tokens()[q]
        order = np.argsort(chunk, kind="stable")
        bounds = np.searchsorted(chunk[order], need, side="left").tolist() + [q.size]
        out = np.empty(q.shape, np.int32)
        for i, c in enumerate(need.tolist()):
            toks = self._token_chunks.get(c)
            if toks is None:
                toks = self._token_chunks[c] = self._token_chunk(c)
                self._token_cache_bytes += toks.nbytes
                while self._token_cache_bytes > _TOKEN_CACHE_BYTES:
                    self._token_cache_bytes -= self._token_chunks.pop(next(iter(self._token_chunks))).nbytes
            idx = order[bounds[i]:bounds[i + 1]]
            out[idx] = toks[q[idx] - c * ct]
        return out

    def _whole_tokens(self) -> np.ndarray:
        """int32 [n_tokens] every token id, kept while it is at most _TOKEN_CACHE_BYTES (then it replaces
        the cached chunks)."""
        whole = self._token_chunks.get(-1)
        if whole is None:
            whole = np.concatenate([self._token_chunks.get(c) if c in self._token_chunks else self._token_chunk(c)
                                    for c in range(self.n_chunks)])
            if whole.nbytes <= _TOKEN_CACHE_BYTES:
                self._token_chunks.clear()
                self._token_chunks[-1] = whole
                self._token_cache_bytes = whole.nbytes
        return whole

    def _token_chunk(self, c: int) -> np.ndarray:
        """int32 token chunk ``c`` (see tokens_at)."""
        arr = self.tokens
        if schema.TOKENS not in self._direct:
            self._direct[schema.TOKENS] = _direct_layout(arr)
        if self._direct[schema.TOKENS] is None or arr.chunks[0] != self.chunk_tokens:
            return np.asarray(self.read_chunk(schema.TOKENS, c), dtype=np.int32)
        stop = min(self.n_tokens, (c + 1) * self.chunk_tokens) - c * self.chunk_tokens
        chunk = _decode_chunk_file(self.path, schema.TOKENS, arr, c, self._direct[schema.TOKENS])
        return np.asarray(chunk[:stop], dtype=np.int32)

    def _require_index(self, hook: str) -> None:
        self.check_hook(hook)
        if self.dense and not schema.is_feature_hook(hook):
            self.activations(hook)  # its metadata read: a damaged recording is named before the index is
        if not self.is_indexed(hook):
            raise StoreError(f"{self.path}: hook {hook!r} is not indexed; run `neurobrowse index {self.path}`")
        self.check_index(hook)

    def check_index(self, hook: str) -> None:
        """Check the finished index of ``hook`` before anything is read from it (once per version of the
        index): its attributes against the manifest, and every stored array's metadata against its
        checksum record (store.format.seal: shape, dtype and chunks as written, the array the record was bound
        to) and against the shape the manifest and the attributes imply. The chunk checksums the records
        hold are then compared at every chunk read. StoreError naming the array and the fix otherwise."""
        if hook in self._checked:
            return
        from store.format.index_check import check_index_arrays

        self._records.update(check_index_arrays(self, hook))
        self._checked.add(hook)

    def _expected_crc(self, name: str, coords: tuple[int, ...]) -> bytes | None:
        rec = self._records.get(name)
        return None if rec is None else seal.expected_crc(rec[0], rec[1], rec[2], coords)

    # ---- an index rebuilt under a reader -------------------------------------------------------------
    # `neurobrowse index --force` builds the new index beside the old one and swaps the folders in one
    # step (store.format.atomic.exchange). A reader notices by the folder's identity (device, inode), drops
    # what it cached of the old index, and reads a page again when the swap fell in the middle of it:
    # every table and page comes from one index, the old or the new.
    def _index_generation(self, hook: str) -> tuple | None:
        try:
            s = os.stat(self.path / schema.index_path(hook))
        except FileNotFoundError:
            return None
        return (s.st_dev, s.st_ino)

    def _sync_index(self, hook: str) -> tuple | None:
        gen = self._index_generation(hook)
        if hook in self._index_gens and self._index_gens[hook] != gen:
            self.forget_index(hook)
        self._index_gens[hook] = gen
        return gen

    def _one_index(self, hook: str, read):
        """``read()`` with every index array from one version of the hook's index (retried once when the
        index was swapped while it ran)."""
        for attempt in (0, 1):
            gen = self._sync_index(hook)
            try:
                out = read()
            except Exception:
                if attempt == 0 and self._index_generation(hook) != gen:
                    continue
                raise
            if self._index_generation(hook) == gen:
                return out
        raise StoreError(f"the index of {hook} in {self.path} was rebuilt twice while it was read; try again")

    def neuron_table(self, hook: str) -> dict[str, np.ndarray]:
        """One row per neuron: a column per ``store.measures.columns.COLUMNS`` entry (neuron, max_act, min_act, the
        per-neuron index arrays, top_token as a readable string) plus top_token_id."""
        return self._one_index(hook, lambda: self._neuron_table(hook))

    def _neuron_table(self, hook: str) -> dict[str, np.ndarray]:
        if hook in self._tables:
            return self._tables[hook]
        self._require_index(hook)
        names = ("top_values", "bottom_values", *columns.INDEX_SCALARS, "top_token_ids", "top_positions")
        arrs = [self.index_array(hook, n) for n in names]
        top, bottom, *scalars, top_ids, top_pos = _read_many([(a, (slice(None),)) for a in arrs])
        table = {"neuron": np.arange(self.n_units(hook), dtype=np.int64),
                 "max_act": np.asarray(top[:, 0], dtype=np.float32),
                 "min_act": np.asarray(bottom[:, 0], dtype=np.float32)}
        table.update({name: np.asarray(v) for name, v in zip(columns.INDEX_SCALARS, scalars)})
        table["top_token_id"] = np.asarray(top_ids[:, 0], dtype=np.int32)
        table["top_token"] = np.array(self.token_strings(table["top_token_id"]), dtype=object)
        table.update(self._explain_columns(hook))
        table["ln_overlap"] = self._ln_overlap(hook, np.asarray(top_pos))
        from store.format import features

        table.update(features.table_columns(self, hook))
        self._tables[hook] = table
        return table

    def ln_partner(self, hook: str) -> str | None:
        """The hook on the other side of the LayerNorm (hook_mid <-> hook_post of the same layer) when this
        store records and indexed both (SoLU-LN), else None."""
        layer, kind = schema.parse_hook_name(hook)
        other = {"hook_mid": "hook_post", "hook_post": "hook_mid"}.get(kind)
        cand = schema.hook_name(layer, other) if other else None
        return cand if cand in self.hooks and self.is_indexed(cand) else None

    def _ln_overlap(self, hook: str, top_pos: np.ndarray) -> np.ndarray:
        """float32 [N]: the share of each neuron's distinct top firings (one per context, at most
        store.measures.explain.N_TOP) on this side of the LayerNorm that are also among its top-k firings on the
        other side (hook_mid vs hook_post); NaN without the other side. Low = the LN changes which
        tokens the neuron fires on most."""
        from store.measures.explain import distinct_top

        other = self.ln_partner(hook)
        if other is None:
            return np.full(self.n_units(hook), np.nan, np.float32)
        other_pos = np.asarray(self.index_array(other, "top_positions")[...])
        mine = distinct_top(top_pos, self.context_len)
        hit = (top_pos[:, :, None] == other_pos[:, None, :]).any(-1) & mine & (top_pos >= 0)[:, :]
        n = mine.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, hit.sum(1) / np.maximum(n, 1), np.nan).astype(np.float32)

    def _explain_columns(self, hook: str) -> dict[str, np.ndarray]:
        """explain_score / _coverage / _precision (float32) and explanation (object: words) per neuron;
        NaN and '' when the index has no explanations yet (`neurobrowse index` adds them)."""
        from store.measures import explain

        N = self.n_units(hook)
        if not explain.is_explained(self, hook):
            out = {k: np.full(N, np.nan, np.float32) for k in columns.EXPLAIN_SCALARS}
            out["explanation"] = np.full(N, "", dtype=object)
            return out
        arrs = [self.index_array(hook, n) for n in schema.EXPLAIN_ARRAYS]
        got = dict(zip(schema.EXPLAIN_ARRAYS, _read_many([(a, (slice(None),)) for a in arrs])))
        out = {k: np.asarray(got[k], np.float32) for k in columns.EXPLAIN_SCALARS}
        out["explanation"] = explain.describe_all(self.explain_vocab, got)
        return out

    def neuron(self, hook: str, neuron: int, distinct: bool = True) -> NeuronView:
        """One neuron's page: stats, top / bottom / quantile-sampled snippets, histogram, top tokens,
        logit effects. Reads one neuron-axis chunk of each index array, concurrently. ``distinct``:
        top and bottom show one firing per recorded context (store.measures.snippets), else every stored one."""
        return self._one_index(hook, lambda: self._neuron(hook, neuron, distinct))

    def _neuron(self, hook: str, neuron: int, distinct: bool = True) -> NeuronView:
        self._require_index(hook)
        if not 0 <= int(neuron) < self.n_units(hook):
            raise StoreError(f"{self.unit_word(hook)} {neuron} is out of range: {hook} has {self.unit_word(hook)}s "
                             f"0..{self.n_units(hook) - 1}")
        n = int(neuron)
        layer = schema.parse_hook_name(hook)[0]
        base = schema.logit_path_for(hook)
        have_logits = base in self._logit_layers()
        state = self.index_state(hook) if hook not in self._attrs else self._attrs[hook]
        self._attrs[hook] = state
        use_distinct = distinct and has_distinct(state)
        arrays = list(_PAGE_ARRAYS)
        if use_distinct:
            arrays += [nm for kind in ("top", "bottom") for r, nm in distinct_names(kind).items() if r[:2] == "d_"]
        derived = [a for a in arrays if a in schema.INDEX_DERIVED and not self._index_stores(hook, a)]
        arrays = [a for a in arrays if a not in derived]
        names = [f"{schema.index_path(hook)}/{a}" for a in arrays]
        if have_logits:
            names += [f"{base}/{k}" for k in schema.LOGIT_ARRAYS]
        if hook not in self._hist_edges:
            self._hist_edges[hook] = self.index_array(hook, "hist_edges")[:]
        rows = self._neuron_rows(names, n)
        page = dict(zip(arrays, rows[:len(arrays)]))
        rest = rows[len(arrays):]
        before, after = index_window(state)
        if state.get("shared_windows"):  # distinct firings also in the raw lists: their windows are there
            for name, (pos, raw_pos, raw) in schema.INDEX_SHARED_WINDOWS.items():
                if name in page:
                    page[name] = fill_shared_windows(page[name], page[pos], page[raw_pos], page[raw])
        if derived:  # the token windows: one gather from the token chunks for every list of the page
            pos = [np.asarray(page[schema.INDEX_DERIVED[a]]) for a in derived]
            flat = self.window_tokens(np.concatenate([p.ravel() for p in pos]), before, after)
            o = 0
            for a, p in zip(derived, pos):
                page[a] = flat[o:o + p.size].reshape(p.shape + (-1,))
                o += p.size
        table = self._neuron_table(hook)
        stats = {k: float(table[k][n]) for k in columns.NUMERIC if k != "neuron"}
        stats["std"] = float(np.sqrt(max(stats["var"], 0.0)))
        stats["n_tokens"] = self.n_tokens
        stats["quantiles"] = {str(q): float(v) for q, v in zip(schema.SAMPLE_QUANTILES, page["quantile_edges"])}
        top_tokens = [(s, float(m), int(c))
                      for s, m, c, i in zip(self.token_strings(page["top_token_ids"]), page["top_token_means"],
                                            page["top_token_counts"], page["top_token_ids"]) if i >= 0]

        def snippets(kind: str | None = None, b: int | None = None) -> list[Snippet]:
            if b is not None:  # a quantile bin: random samples, never cut to one per context
                return self._snippets(page["sample_positions"][b], page["sample_values"][b],
                                      page["sample_context_tokens"][b], page["sample_context_acts"][b],
                                      before, distinct=False)
            nm = distinct_names(kind)
            if use_distinct:
                return self._snippets(page[nm["d_positions"]], page[nm["d_values"]], page[nm["d_tokens"]],
                                      page[nm["d_acts"]], before, more=page[nm["d_more"]])
            return self._snippets(page[nm["positions"]], page[nm["values"]], page[nm["tokens"]], page[nm["acts"]],
                                  before, distinct=distinct)

        samples = {name: snippets(b=b) for b, name in enumerate(schema.SAMPLE_BINS)}
        up = down = []
        if have_logits:
            ut, uv, dt, dv = rest[:4]
            up = list(zip(self.token_strings(ut), map(float, uv)))
            down = list(zip(self.token_strings(dt), map(float, dv)))
        return NeuronView(
            hook=hook, layer=layer, neuron=n, stats=stats, top=snippets("top"), bottom=snippets("bottom"),
            samples=samples, hist_edges=np.asarray(self._hist_edges[hook]),
            hist_counts=np.asarray(page["hist_counts"]), top_tokens=top_tokens, logit_up=up, logit_down=down,
            explanation=str(table["explanation"][n]),
            window=(before, after), context_len=self.context_len, distinct=distinct,
            related=self.related_units(hook, n),
        )

    def unit_word(self, hook: str) -> str:
        """'feature' for a dictionary's features, else 'neuron'."""
        return "feature" if schema.is_feature_hook(hook) else "neuron"

    def related_units(self, hook: str, unit: int, n: int = 8) -> list[dict]:
        """A feature: the neurons of its source hook its decoder direction loads on most (weight = the
        direction's component, unit norm). A neuron: per dictionary on its hook, the features that read
        from it most (weight = encoder weight W_enc[neuron, feature] > 0)."""
        from store.format import features

        return features.related_units(self, hook, int(unit), n)

    def index_window(self, hook: str) -> tuple[int, int]:
        """(before, after): the tokens around each firing that the index of ``hook`` keeps."""
        if hook not in self._attrs:
            self._attrs[hook] = self.index_state(hook)
        return index_window(self._attrs[hook])

    def passage(self, hook: str, neuron: int, position: int, around: int = 256) -> Snippet:
        """The whole recorded context of the firing at ``position`` (every token the model saw with it,
        with ``neuron``'s activation at each, read from the dense chunk) and up to ``around`` tokens of
        its document before and after that context (``tokens[:ctx_lo]`` / ``tokens[ctx_hi:]``, activation
        0: the model did not see them with this context). Reads one dense chunk and a few token chunks."""
        if not 0 <= int(position) < self.n_tokens:
            raise StoreError(f"position {position} is outside {self.path} (0..{self.n_tokens - 1})")
        if not 0 <= int(neuron) < self.n_units(hook):
            raise StoreError(f"{self.unit_word(hook)} {neuron} is out of range: {hook} has {self.unit_word(hook)}s "
                             f"0..{self.n_units(hook) - 1}")
        p, L = int(position), self.context_len
        c0 = p // L * L
        c1 = min(self.n_tokens, c0 + L)
        lo, hi = max(0, c0 - around), min(self.n_tokens, c1 + around)
        docs = np.asarray(self.doc_starts[lo:hi])
        before_starts = np.flatnonzero(docs[:c0 - lo + 1])  # document starts at or before the context start
        if len(before_starts):
            lo += int(before_starts[-1])
        after_starts = np.flatnonzero(docs[c1 - lo:]) if c1 < hi else np.zeros(0, np.int64)
        if len(after_starts):
            hi = c1 + int(after_starts[0])
        ids = np.asarray(self.tokens[lo:hi]).astype(np.int32)
        chunk = p // self.chunk_tokens
        rows = self.read_chunk(hook, chunk)
        r0 = chunk * self.chunk_tokens
        acts = np.zeros(hi - lo, np.float32)
        acts[c0 - lo:c1 - lo] = rows[c0 - r0:c1 - r0, int(neuron)].astype(np.float32)
        return Snippet(position=p, value=float(acts[p - lo]), token_ids=ids, tokens=self.token_strings(ids),
                       acts=acts, center=p - lo, ctx_lo=c0 - lo, ctx_hi=c1 - lo)

    def _neuron_rows(self, names: list[str], n: int) -> list[np.ndarray]:
        """Row ``n`` of each named [neuron, ...] array. Arrays in the plain zstd + crc32c layout are
        decoded directly from their chunk files (with a small cache of recent chunks, so stepping
        to the next neuron is free); others go through zarr in one concurrent batch."""
        out: list = [None] * len(names)
        slow = []
        for i, name in enumerate(names):
            arr = self._array(name)
            if name not in self._direct:
                self._direct[name] = _direct_layout(arr)
            if self._direct[name] != "zstd":
                slow.append(i)
                continue
            ci = n // arr.chunks[0]
            chunk = self._chunk_cache.get((name, ci))
            if chunk is None:
                coords = (ci,) + (0,) * (arr.ndim - 1)
                chunk = _decode_chunk_file(self.path, name, arr, ci, "zstd", self._expected_crc(name, coords),
                                           "its array's checksum record holds")
                self._chunk_cache[(name, ci)] = chunk
                while len(self._chunk_cache) > _CHUNK_CACHE:
                    self._chunk_cache.pop(next(iter(self._chunk_cache)))
            out[i] = chunk[n % arr.chunks[0]]
        if slow:
            for i, row in zip(slow, _read_many([(self._array(names[i]), (n,)) for i in slow])):
                out[i] = row
        return out

    def _logit_layers(self) -> set[str]:
        if "#logit" not in self._tables:
            try:
                g = self.group[schema.LOGIT_GROUP]
                self._tables["#logit"] = {f"{schema.LOGIT_GROUP}/{k}": None for k in g.group_keys()}
            except KeyError:
                self._tables["#logit"] = {}
        return set(self._tables["#logit"])

    def _snippets(self, positions, values, ctx_tokens, ctx_acts, before: int, *, more=None,
                  distinct: bool = True) -> list[Snippet]:
        """positions [m], values [m], ctx_tokens / ctx_acts [m, window] -> Snippets (store.measures.snippets)."""
        return build_snippets(positions, values, ctx_tokens, ctx_acts, self._strings(ctx_tokens), before=before,
                              context_len=self.context_len, more=more, distinct=distinct)

    # ---- size and summary ----------------------------------------------------------------------
    def size_on_disk(self, sub: str = "") -> int:
        """Bytes of all files under the store (or under one array / group path)."""
        root = self.path / sub if sub else self.path
        total = 0
        for dirpath, _, files in os.walk(root):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
        return total

    def missing_files(self) -> list[str]:
        """Files a reader needs that are gone (cheap: existence only, no checksums; `neurobrowse verify`
        reads everything): the metadata of each recorded array, every chunk with a completion marker,
        and each finished index's array metadata. Paths relative to the store."""
        out = []
        for name in self.per_token_arrays:
            if not (self.path / name / "zarr.json").is_file():
                out.append(f"{name}/zarr.json")
                continue
            marker = self.path / schema.done_path(name) / "c"
            if not marker.is_dir():
                continue
            ndim = 1 if name in (schema.TOKENS, schema.DOC_STARTS) else 2
            for m in marker.iterdir():
                coords = (int(m.name),) + (0,) * (ndim - 1) if m.name.isdigit() else None
                if coords is not None and not chunkio.chunk_path(self.path, name, coords).is_file():
                    out.append(f"{name}/{chunkio.chunk_key(coords)}")
        for hook in self.hooks:
            if self.index_state(hook).get("complete"):
                out += [f"{schema.index_path(hook)}/{a}/zarr.json" for a in schema.INDEX_ARRAYS
                        if a not in schema.INDEX_DERIVED
                        and not (self.path / schema.index_path(hook) / a / "zarr.json").is_file()]
        return out

    def info(self) -> dict:
        """A summary for `neurobrowse info` and the app."""
        dense_raw = sum(self.n_tokens * self.d_mlp * 2 for _ in self.recorded_hooks) if self.dense else 0
        dense_disk = sum(self.size_on_disk(h) for h in self.recorded_hooks) if self.dense else 0
        per_hook = {}
        for h in self.hooks:
            state = self.index_state(h)
            per_hook[h] = {"indexed": self.is_indexed(h), "index_state": state,
                           "bytes_on_disk": self.size_on_disk(h) if h in self.recorded_hooks else
                           self.size_on_disk(schema.dictionary_path(h))}
            if schema.is_feature_hook(h):
                per_hook[h]["features"] = self.n_units(h)
        done = self.done_chunks()
        m = self.manifest
        return {
            "path": str(self.path),
            "schema_version": m.get("schema_version"),
            "run_uuid": m.get("run_uuid"),
            "created": m.get("created"),
            "code_version": m.get("code_version"),
            "model": {k: self.model_config.get(k) for k in ("act_fn", "n_layers", "d_model", "d_mlp", "d_vocab", "n_ctx")},
            "checkpoint_path": m.get("checkpoint_path"),
            "checkpoint_hash": m.get("checkpoint_hash"),
            "tokenizer_hash": m.get("tokenizer_hash"),
            "corpus_manifest_hash": m.get("corpus_manifest_hash"),
            "hooks": per_hook,
            "n_tokens": self.n_tokens,
            "context_len": self.context_len,
            "chunk_tokens": self.chunk_tokens,
            "chunks_done": done,
            "n_chunks": self.n_chunks,
            "complete": self.complete,
            "missing_files": self.missing_files(),
            "resume_command": None if self.complete else self.resume_command(),
            "size_on_disk": self.size_on_disk(),
            "dense": self.dense,
            "dense_bytes_raw": dense_raw,
            "dense_bytes_on_disk": dense_disk,
            "compression_ratio": dense_raw / dense_disk if dense_disk else None,
        }


class WindowTokens:
    """A derived index array (schema.INDEX_DERIVED): int32 [neuron, ..., window] token ids around each
    position of the positions array it derives from, gathered from the store's tokens when indexed.
    Offers what readers of the stored arrays use: shape, ndim, dtype, ``[...]`` / basic selections
    and ``get_orthogonal_selection``."""

    def __init__(self, store: Store, hook: str, name: str):
        self.store = store
        self.name = name
        self.positions = store.index_array(hook, schema.INDEX_DERIVED[name])
        self.before, self.after = store.index_window(hook)
        self.shape = tuple(self.positions.shape) + (self.before + 1 + self.after,)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.int32)

    def _windows(self, pos) -> np.ndarray:
        return self.store.window_tokens(np.asarray(pos), self.before, self.after)

    def __getitem__(self, sel) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        if any(s is Ellipsis for s in sel):
            return self._windows(self.positions[...])[sel]
        lead, rest = sel[:self.ndim - 1], sel[self.ndim - 1:]
        out = self._windows(self.positions[lead])
        return out[(Ellipsis,) + rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def get_orthogonal_selection(self, sel) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        lead, rest = sel[:self.ndim - 1], sel[self.ndim - 1:]
        out = self._windows(self.positions.get_orthogonal_selection(lead))
        return out[(Ellipsis,) + rest] if rest else out


class SharedWindows:
    """A distinct list's windows stored with shared windows (schema.INDEX_SHARED_WINDOWS): the stored
    array completed from the raw list's windows, for the rows (neurons) selected. Offers what readers of
    the stored arrays use: shape, ndim, dtype, ``[...]`` / basic selections and ``get_orthogonal_selection``."""

    def __init__(self, store: Store, hook: str, name: str):
        base = schema.index_path(hook)
        pos, raw_pos, raw = schema.INDEX_SHARED_WINDOWS[name]
        self.arrays = [store._array(f"{base}/{a}") for a in (name, pos, raw_pos, raw)]
        self.shape, self.ndim, self.dtype = self.arrays[0].shape, self.arrays[0].ndim, self.arrays[0].dtype

    def _rows(self, neurons, orthogonal: bool) -> np.ndarray:
        if orthogonal:
            parts = [np.asarray(a.get_orthogonal_selection((neurons,))) for a in self.arrays]
        else:
            parts = [np.asarray(a[neurons]) for a in self.arrays]
        return fill_shared_windows(*parts)

    def _select(self, sel, orthogonal: bool) -> np.ndarray:
        sel = sel if isinstance(sel, tuple) else (sel,)
        if not sel or any(s is Ellipsis for s in sel):
            return self._rows(slice(None), False)[sel]
        out = self._rows(sel[0], orthogonal)
        keep = 0 if isinstance(sel[0], (int, np.integer)) else 1  # an int selection drops the neuron axis
        if not orthogonal:
            return out[(slice(None),) * keep + tuple(sel[1:])]
        for i in reversed(range(len(sel) - 1)):  # one axis at a time, the last first (earlier axes stay put)
            s, axis = sel[1 + i], keep + i
            out = out[(slice(None),) * axis + (s,)] if isinstance(s, slice) else np.take(out, s, axis)
        return out

    def __getitem__(self, sel) -> np.ndarray:
        return self._select(sel, False)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def get_orthogonal_selection(self, sel) -> np.ndarray:
        return self._select(sel, True)


def _read_many(reads: list[tuple[zarr.Array, tuple]]) -> list[np.ndarray]:
    """Read several (array, selection) pairs in one concurrent batch on zarr's event loop."""

    async def go():
        # return_exceptions: every read is awaited to its end, so a failed read (a damaged chunk) leaves
        # no "Task exception was never retrieved" behind; the first failure is raised here
        return await asyncio.gather(*[a.async_array.getitem(sel) for a, sel in reads], return_exceptions=True)

    out = sync(go())
    for x in out:
        if isinstance(x, BaseException):
            raise x
    return [np.asarray(x) for x in out]


def as_store(store: "Store | str | os.PathLike") -> Store:
    """The store at a path opened, or the Store given (every function that takes either uses this)."""
    return Store.open(store) if isinstance(store, (str, os.PathLike)) else store
