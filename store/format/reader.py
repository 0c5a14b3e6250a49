"""Reading an activation store: the manifest, per-token arrays, the tokenizer, the index of each hook.

``Store.open(path)`` opens the Zarr group through ``store.format.checked.CheckedLocalStore``, a
LocalStore that refuses to hand zarr a damaged chunk: a chunk whose Crc32c does not match (random
bytes, truncation) or a chunk file that is missing (zarr would silently read fill_value) raises
CorruptChunkError naming the array and the chunk key. Every read through a Store -
``activations(hook)[...]``, the index, xarray or dask on ``store.group`` - is checked this way.

The rooms beside this one: store.format.checked (the checked store, direct chunk reads, repair
advice), store.format.neuron_table (the per-neuron table), store.format.neuron_page (one neuron's
page, NeuronView, and a firing's passage), store.format.windows (index arrays assembled on read),
store.format.summary (size on disk, missing files, `info`). Reading one neuron's page touches only
the index arrays (chunked along the neuron axis) and fetches them in one concurrent batch, so it
stays fast on any store size.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import zarr

from store import schema
from store.errors import StoreError
from store.format import chunkio, neuron_page, neuron_table, seal, summary
from store.format.checked import (  # noqa: F401  (re-exported: the names callers import from here)
    CheckedLocalStore, damaged_advice, decode_chunk_file, direct_layout, index_advice, index_record_name,
    read_many, rerecord_out,
)
from store.format.manifest import validate_manifest
from store.format.neuron_page import NeuronView
from store.format import windows
from store.format.windows import SharedWindows, WindowTokens
from store.measures.snippets import Snippet, index_window, window_positions  # noqa: F401  (Snippet re-exported)
from store.measures.tokens_display import readable_vocab
from store.schema import read_manifest




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
            self._direct[name] = direct_layout(arr)
        if self._direct[name] is not None and arr.chunks[0] == self.chunk_tokens:
            expect = chunkio.marker_crc(self._marker(name, chunk_index))
            return decode_chunk_file(self.path, name, arr, chunk_index, self._direct[name], expect)[:stop - start]
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
        """store.measures.explain_families.Vocab of this recording's tokenizer (the token tables the rule search
        uses)."""
        from store.measures.explain_families import Vocab

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
        ut, uv, dt, dv = read_many([(a, (neuron,)) for a in arrs])
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
            raise StoreError(f"{meta} is unreadable ({e}); "
                             f"re-index with `neurobrowse index --force {self.path}`") from e

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
        """int32 token ids at ``positions`` (int64 in 0..n_tokens-1, any order), read from the token chunks
        through a cache of decoded chunks (store.format.windows.tokens_at)."""
        return windows.tokens_at(self, positions)

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
        per-neuron index arrays, top_token as a readable string) plus top_token_id (store.format.neuron_table)."""
        return self._one_index(hook, lambda: neuron_table.neuron_table(self, hook))

    def ln_partner(self, hook: str) -> str | None:
        """The hook on the other side of the LayerNorm (hook_mid <-> hook_post of the same layer) when this
        store records and indexed both (SoLU-LN), else None."""
        return neuron_table.ln_partner(self, hook)

    def neuron(self, hook: str, neuron: int, distinct: bool = True) -> NeuronView:
        """One neuron's page: stats, top / bottom / quantile-sampled snippets, histogram, top tokens,
        logit effects. Reads one neuron-axis chunk of each index array, concurrently. ``distinct``:
        top and bottom show one firing per recorded context (store.measures.snippets), else every stored one.
        Assembled by store.format.neuron_page."""
        return self._one_index(hook, lambda: neuron_page.neuron_page(self, hook, neuron, distinct))


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
        with ``neuron``'s activation at each) and up to ``around`` tokens of its document before and
        after that context (store.format.neuron_page.passage)."""
        return neuron_page.passage(self, hook, neuron, position, around)

    # ---- size and summary (store.format.summary) ------------------------------------------------
    def size_on_disk(self, sub: str = "") -> int:
        """Bytes of all files under the store (or under one array / group path)."""
        return summary.size_on_disk(self.path / sub if sub else self.path)

    def missing_files(self) -> list[str]:
        """Files a reader needs that are gone (cheap: existence only, no checksums; `neurobrowse verify`
        reads everything). Paths relative to the store."""
        return summary.missing_files(self)

    def info(self) -> dict:
        """A summary for `neurobrowse info` and the app."""
        return summary.info(self)





def as_store(store: "Store | str | os.PathLike") -> Store:
    """The store at a path opened, or the Store given (every function that takes either uses this)."""
    return Store.open(store) if isinstance(store, (str, os.PathLike)) else store
