"""The on-disk schema of a neurobrowse activation store. Nothing else spells an array name.

One Zarr v3 group per recording::

    STORE/                               root group; attrs["neurobrowse"] = the manifest (below)
      tokens              int32  [token]            token ids of the recorded stream
      doc_starts          uint8  [token]            1 where a document begins
      tokenizer_json      uint8  [byte]             the tokenizer.json bytes (store readable alone)
      blocks.{l}.mlp.hook_post   float16 [token, neuron]   dense MLP activations, one per hook
      blocks.{l}.mlp.hook_mid    float16 [token, neuron]   (SoLU-LN: before the LayerNorm)
      done/{array}        uint8  [chunk]            completion markers, one Zarr chunk per marker
      logit/blocks.{l}.mlp/{up,down}_{tokens,values}  [neuron, K_LOGIT]   W_out @ W_U effects
      index/{hook}/...    per-neuron index (names in INDEX_ARRAYS); attrs = index state

The token axis is cut into chunks of ``chunk_tokens`` rows for every per-token array, so a recorded
batch of rows maps to whole chunks of every array (partial writes are read-modify-write and slow).
Every array has ``dimension_names`` (xarray, dask.array.from_zarr) and a Crc32c checksum codec (a
damaged chunk is an error, not silent garbage).
"""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_VERSION = 1
ATTRS_KEY = "neurobrowse"  # root attribute holding the manifest

# ---- root arrays -------------------------------------------------------------------------------
TOKENS = "tokens"
DOC_STARTS = "doc_starts"
TOKENIZER_JSON = "tokenizer_json"
DONE_GROUP = "done"
LOGIT_GROUP = "logit"
INDEX_GROUP = "index"

TOKEN_DIM = "token"
NEURON_DIM = "neuron"

K_LOGIT = 20  # tokens kept per neuron and direction for logit effects

# ---- the manifest (root attrs[ATTRS_KEY]) ----------------------------------------------------------
# schema_version, run_uuid, created (ISO time), code_version, checkpoint_hash, tokenizer_hash,
# corpus_manifest_hash, model_config (TransformerLens field names), hooks (list of hook names),
# n_tokens, context_len, chunk_tokens, complete (bool; set last by the recorder).
MANIFEST_KEYS = (
    "schema_version",
    "run_uuid",
    "created",
    "code_version",
    "checkpoint_hash",
    "tokenizer_hash",
    "corpus_manifest_hash",
    "model_config",
    "hooks",
    "n_tokens",
    "context_len",
    "chunk_tokens",
    "complete",
)


def read_manifest(path) -> dict | None:
    """The manifest of the store at ``path`` (its root zarr.json's attrs[ATTRS_KEY]), or None when there
    is no zarr.json; a StoreError naming the file when it is unreadable or not JSON."""
    from store.errors import StoreError

    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{meta} is unreadable or not JSON ({e}); this is not a usable store") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("attributes") or {}, dict):
        raise StoreError(f"{meta} is not a Zarr group's metadata; this is not a usable store")
    manifest = (doc.get("attributes") or {}).get(ATTRS_KEY)
    if manifest is not None and not isinstance(manifest, dict):
        raise StoreError(f"{meta}: the {ATTRS_KEY!r} manifest is not a JSON object; this is not a usable store")
    return manifest


def record_command(manifest: dict, path) -> str:
    """The command that resumes (or repairs) the recording of the store now at ``path``: the one saved in
    its manifest with ``--out`` pointing here (the store may have been moved or copied since)."""
    import shlex

    saved = (manifest or {}).get("record_command")
    if not saved:
        return f"neurobrowse record CHECKPOINT --out {shlex.quote(str(path))}"
    try:
        argv = shlex.split(saved)
    except ValueError:
        return saved
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            argv[i + 1] = str(path)
        elif a.startswith("--out="):
            argv[i] = f"--out={path}"
    return shlex.join(argv)


def hook_name(layer: int, hook: str = "hook_post") -> str:
    """TransformerLens hook name, e.g. hook_name(0) == 'blocks.0.mlp.hook_post'."""
    return f"blocks.{layer}.mlp.{hook}"


def parse_hook_name(name: str) -> tuple[int, str]:
    """'blocks.3.mlp.hook_mid' -> (3, 'hook_mid'); a feature hook (a dictionary's features, below)
    'blocks.0.mlp.hook_post.sae.8x-k32' -> (0, 'hook_post.sae.8x-k32'); a clear ValueError otherwise."""
    parts = name.split(".")
    feature = len(parts) == 6 and parts[4] == FEATURE_TAG and bool(parts[5])
    if (len(parts) != 4 and not feature) or parts[0] != "blocks" or not parts[1].isdigit() or parts[2] != "mlp":
        raise ValueError(f"{name!r} is not an MLP hook name like 'blocks.0.mlp.hook_post' (or a dictionary's "
                         f"features like 'blocks.0.mlp.hook_post.{FEATURE_TAG}.8x-k32')")
    return int(parts[1]), ".".join(parts[3:])


# ---- dictionaries (sparse autoencoders) over a recorded hook: their features are hooks too --------------
# STORE/dictionaries/{feature hook}/ holds one dictionary in the SAELens layout (cfg.json +
# sae_weights.safetensors, see store.dictionary) plus neurobrowse.json (its metrics and provenance);
# a folder appears only when it is complete (written beside, then renamed). Its features are the hook
# '{source hook}.sae.{name}' of the store: computed chunk by chunk from the source hook's activations,
# indexed under index/{feature hook}/ and with logit effects (W_dec @ W_out @ W_U) under logit/{feature hook}/.
FEATURE_TAG = "sae"
DICTIONARY_GROUP = "dictionaries"
DICTIONARY_TRAIN = ".train"  # dictionaries/.train/{feature hook}/: the resume state of a training run
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def feature_hook_name(source_hook: str, name: str) -> str:
    """'blocks.0.mlp.hook_post', '8x-k32' -> 'blocks.0.mlp.hook_post.sae.8x-k32' (ValueError for a bad name)."""
    if is_feature_hook(source_hook):
        raise ValueError(f"{source_hook!r} is already a dictionary's features; train on a recorded hook")
    parse_hook_name(source_hook)
    if not name or any(c not in NAME_CHARS for c in name):
        raise ValueError(f"dictionary name {name!r}: use letters, digits, '-' and '_' only (e.g. 8x-k32)")
    return f"{source_hook}.{FEATURE_TAG}.{name}"


def is_feature_hook(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 6 and parts[4] == FEATURE_TAG


def feature_source(name: str) -> tuple[str, str]:
    """'blocks.0.mlp.hook_post.sae.8x-k32' -> ('blocks.0.mlp.hook_post', '8x-k32')."""
    parse_hook_name(name)
    if not is_feature_hook(name):
        raise ValueError(f"{name!r} is not a dictionary's features "
                         f"(like 'blocks.0.mlp.hook_post.{FEATURE_TAG}.8x-k32')")
    parts = name.split(".")
    return ".".join(parts[:4]), parts[5]


FEATURE_DIM = "feature"  # the unit axis of a feature hook's index and logit arrays (a size of its own for xarray)


def unit_dim(hook: str) -> str:
    """The dimension name of a hook's unit axis: "neuron", or "feature" for a dictionary's features."""
    return FEATURE_DIM if is_feature_hook(hook) else NEURON_DIM


def dictionary_path(feature_hook: str) -> str:
    return f"{DICTIONARY_GROUP}/{feature_hook}"


def logit_path_for(hook: str) -> str:
    """Where a hook's logit effects are: a layer's neurons share logit/blocks.{l}.mlp, a dictionary's
    features have logit/{feature hook}."""
    if is_feature_hook(hook):
        return f"{LOGIT_GROUP}/{hook}"
    return logit_path(parse_hook_name(hook)[0])


def done_path(array_name: str) -> str:
    """Path of the completion-marker array for a per-token array."""
    return f"{DONE_GROUP}/{array_name}"


def logit_path(layer: int) -> str:
    return f"{LOGIT_GROUP}/blocks.{layer}.mlp"


LOGIT_ARRAYS = ("up_tokens", "up_values", "down_tokens", "down_values")


def index_path(hook: str) -> str:
    return f"{INDEX_GROUP}/{hook}"


REBUILD_GROUP = "_rebuild"  # index/_rebuild/{hook}: a new index built beside a finished one, then swapped in


def index_rebuild_path(hook: str) -> str:
    return f"{INDEX_GROUP}/{REBUILD_GROUP}/{hook}"


# ---- index arrays, under index/{hook}/ ----------------------------------------------------------
# name -> (dtype, dimension names). Sizes: k = top-k, W = CONTEXT_BEFORE + 1 + CONTEXT_AFTER,
# B = len(SAMPLE_BINS), S = SAMPLES_PER_BIN, H = histogram bins, T = TOP_TOKENS, V = vocabulary.
CONTEXT_BEFORE = 64  # default tokens of context kept before a firing (`neurobrowse index --window B,A`)
CONTEXT_AFTER = 16  # and after it; an index stores the sizes it used (attrs context_before / context_after)
SAMPLE_BINS = ("0.999-1", "0.99-0.999", "0.9-0.99", "0.5-0.9", "0-0.5", "random")
SAMPLES_PER_BIN = 10
TOP_TOKENS = 16
DEFAULT_K = 32

INDEX_ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "top_values": ("float32", ("neuron", "k")),  # k largest activations, descending
    "top_positions": ("int64", ("neuron", "k")),  # their global token positions
    "top_context_tokens": ("int32", ("neuron", "k", "window")),
    "top_context_acts": ("float16", ("neuron", "k", "window")),  # this neuron's acts in the window
    "bottom_values": ("float32", ("neuron", "k")),  # k smallest, ascending
    "bottom_positions": ("int64", ("neuron", "k")),
    "bottom_context_tokens": ("int32", ("neuron", "k", "window")),
    "bottom_context_acts": ("float16", ("neuron", "k", "window")),
    "quantile_edges": ("float32", ("neuron", "edge")),  # activation at quantiles 0.5 0.9 0.99 0.999
    "sample_positions": ("int64", ("neuron", "bin", "sample")),  # -1 where a bin had too few
    "sample_values": ("float32", ("neuron", "bin", "sample")),
    "sample_context_tokens": ("int32", ("neuron", "bin", "sample", "window")),
    "sample_context_acts": ("float16", ("neuron", "bin", "sample", "window")),
    "hist_counts": ("int64", ("neuron", "hist_bin")),
    "hist_edges": ("float32", ("hist_edge",)),  # shared by all neurons of the hook
    "mean": ("float64", ("neuron",)),
    "var": ("float64", ("neuron",)),
    "skewness": ("float64", ("neuron",)),
    "kurtosis": ("float64", ("neuron",)),  # excess kurtosis
    "density": ("float32", ("neuron",)),  # share of tokens with activation > DENSITY_THRESHOLD
    "token_count": ("int64", ("vocab",)),  # occurrences of each token id
    # (indexes written before the top-token arrays were computed at the end also hold token_sum [vocab,
    # neuron], the sums per token: no reader uses it; the per-token sums live in the resume state only)
    "top_token_ids": ("int32", ("neuron", "top_token")),  # tokens with the highest mean activation
    "top_token_means": ("float32", ("neuron", "top_token")),
    "top_token_counts": ("int64", ("neuron", "top_token")),  # occurrences of each of those tokens
    # distinct passages (store.measures.snippets): the best / lowest firing of each recorded context, k per neuron
    "distinct_top_values": ("float32", ("neuron", "k")),  # descending, one per context
    "distinct_top_positions": ("int64", ("neuron", "k")),
    "distinct_top_context_tokens": ("int32", ("neuron", "k", "window")),
    "distinct_top_context_acts": ("float16", ("neuron", "k", "window")),
    "distinct_top_more": ("int32", ("neuron", "k")),  # further tokens of that context >= half of it
    "distinct_bottom_values": ("float32", ("neuron", "k")),  # ascending, one per context
    "distinct_bottom_positions": ("int64", ("neuron", "k")),
    "distinct_bottom_context_tokens": ("int32", ("neuron", "k", "window")),
    "distinct_bottom_context_acts": ("float16", ("neuron", "k", "window")),
    "distinct_bottom_more": ("int32", ("neuron", "k")),
    "token_rule_score": ("float32", ("neuron",)),  # see store.measures.scores
    "sim_score": ("float32", ("neuron",)),  # see store.measures.scores
}
DENSITY_THRESHOLD = 0.0

# Index arrays that are not stored but derived from the store's tokens: the token ids of each window
# are tokens[position - before .. position + after] (-1 past the ends of the store), so the index
# writes only the positions and readers gather the windows (store.format.reader.Store.index_array; a page
# reads a few token chunks). They were a third of an index on disk. Indexes written before hold them
# as arrays, which readers use when present. name -> the positions array it derives from.
INDEX_DERIVED: dict[str, str] = {
    "top_context_tokens": "top_positions",
    "bottom_context_tokens": "bottom_positions",
    "sample_context_tokens": "sample_positions",
    "distinct_top_context_tokens": "distinct_top_positions",
    "distinct_bottom_context_tokens": "distinct_bottom_positions",
}
# Windows shared between the distinct lists and the raw ones: most distinct firings (one per context)
# are also in the raw top / bottom list (88% / 61% on the demo GeLU model), with the same window. An
# index with the attribute ``shared_windows`` stores such an entry's window as zeros and readers take
# it from the raw list (store.measures.snippets.fill_shared_windows). name -> (its positions, the raw list's
# positions, the raw list's windows).
INDEX_SHARED_WINDOWS: dict[str, tuple[str, str, str]] = {
    "distinct_top_context_acts": ("distinct_top_positions", "top_positions", "top_context_acts"),
    "distinct_bottom_context_acts": ("distinct_bottom_positions", "bottom_positions", "bottom_context_acts"),
}

# Automatic rule explanations (store.measures.explain), written next to INDEX_ARRAYS by the index and by
# store.index.explanations.explain_hook (an index made before them gains them without re-indexing). The rule's
# words are rendered at read time from its family and arguments (store.measures.explain_families.describe).
EXPLAIN_ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "explain_family": ("int8", ("neuron",)),  # index into store.measures.explain_families.FAMILIES, -1 = no rule
    "explain_args": ("int32", ("neuron", "rule_arg")),  # token / class / fold ids of the rule, -1 unused
    "explain_hits": ("int32", ("neuron",)),  # distinct top firings the rule matches
    "explain_n": ("int32", ("neuron",)),  # distinct top firings judged (at most store.measures.explain.N_TOP)
    "explain_coverage": ("float32", ("neuron",)),  # hits / n
    "explain_precision": ("float32", ("neuron",)),  # share of the rule's occurrences that fire high
    "explain_score": ("float32", ("neuron",)),  # F2 of coverage and precision
}

# ---- index details (see store/index/ and store/index/kernels/) ------------------------------------------------
# Sizes: window = CONTEXT_BEFORE + 1 + CONTEXT_AFTER; edge = len(SAMPLE_QUANTILES); bin =
# len(SAMPLE_BINS); hist_bin = kernels.histogram.HIST_BINS (992 bins read off the float16 bit pattern: 16 per
# octave, exact and mergeable), hist_edge = hist_bin + 1; vocab = model_config["d_vocab"].
# Padding: window slots past the ends of the store have token -1; slots outside the firing's context
# hold their token (shown greyed) and act 0 (indexes before distinct_lists: token -1 there too);
# missing entries (fewer than k tokens, an empty sample bin) have position -1 and value NaN;
# top_token_ids is -1 where fewer than TOP_TOKENS tokens occur MIN_TOKEN_COUNT times.
SAMPLE_QUANTILES = (0.5, 0.9, 0.99, 0.999)  # lower edges of the quantile sample bins
SAMPLE_SEED = 0  # seed of the hash that draws the random samples
MIN_TOKEN_COUNT = 5  # a token must occur this often to rank in top_token_ids / the sim score
INDEX_NEURON_CHUNK = 16  # neurons per chunk of [neuron, ...] index arrays (one page = one chunk)
WINDOW_DIM = "window"
# Arrays with one value per neuron (or none) are stored as one chunk: the neuron table reads them whole.
INDEX_WHOLE_ARRAYS = ("hist_edges", "mean", "var", "skewness", "kurtosis", "density", "token_count",
                      "token_rule_score", "sim_score")
# index/{hook} group attrs: complete (bool, written last), k, n_tokens, run_uuid (of the store indexed),
# sample_bins, sample_quantiles, samples_per_bin, seed, min_token_count, context_before/after (the window),
# distinct_lists (True: the distinct_* arrays exist),
# histogram (a description), progress (resume state of the passes; internal to the indexer).
INDEX_STATE_GROUP = "_state"  # index/{hook}/_state/{slot}/...: saved partial results for resuming


# ---- chunking and codecs (figures from benchmarks/bench_store.py) ------------------------------------
# Dense activations are chunked [chunk_tokens, d_mlp]: whole rows, because the indexer streams over
# tokens and reads every neuron of a row; one neuron's page is served by the index, never by the
# dense array. No sharding: a chunk of ~8 MiB is already a large sequential file write, sharding
# would force read-modify-write when a batch does not fill a whole shard, and two writers (Dask)
# writing into one shard lose data. Measured on the 2-core dev box (float16, d_mlp 2048, 32k rows):
#   rows/chunk   2048 (8 MiB)   8192 (32 MiB)     zstd-1 write MB/s ~520 / ~520, uncompressed
#   ~1800 / ~2300 (page cache), np.save of the same bytes 440-7000 (page cache dependent).
# Chunks of 4-32 MiB all run at the codec's speed, so the target is TARGET_CHUNK_BYTES (small
# enough that a tiny test store has several chunks per hook, large enough that files stay few:
# 10M tokens x 2048 neurons -> ~2400 files per hook).
TARGET_CHUNK_BYTES = 8 * 2**20  # bytes of float16 activations per chunk
MIN_CHUNK_TOKENS = 512  # never fewer rows than this per chunk (tokens arrays stay sensible)

# Dense float16 activations are stored UNCOMPRESSED, with a Crc32c checksum only. Measured on the
# shared 2-core box (benchmarks/bench_store.py --parts chunks,writer; 32k x 2048 float16):
#   codec                    GeLU ratio  SoLU ratio  write MB/s (page cache)
#   zstd-1 + crc             1.12        1.48        ~360 / ~120   (np.save of the same bytes: 2000-4000)
#   blosc-lz4+shuffle + crc  1.00        1.11        ~600-1000
#   blosc-zstd1+bitshuffle   1.07        1.35        ~330-400
#   crc only                 1.00        1.00        see benchmarks/RESULTS.md "The store"
# Float16 activations barely compress, and any compressor costs 3-20x the write time, which breaks
# the bar "the writer stores activations at >= 0.8x np.save". Tokens, markers and the index (small,
# integer-heavy, read per neuron) use zstd-1 + crc.
ZSTD_LEVEL = 1


def dense_codecs() -> list:
    """Codecs of the dense [token, neuron] activation arrays: a Crc32c checksum, no compression."""
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


# Every array is created with write_empty_chunks, so an all-zero chunk is still a file and a
# missing file always means a chunk that was never written (or was lost). This is a run-time
# setting, not stored in the metadata: pass it when creating AND use arr.with_config(ARRAY_CONFIG)
# on arrays opened for writing.
ARRAY_CONFIG = {"write_empty_chunks": True}


def chunk_tokens_for(d_mlp: int, context_len: int) -> int:
    """Rows per chunk along the token axis: ~TARGET_CHUNK_BYTES of float16, a multiple of context_len,
    so a batch of whole contexts fills whole chunks."""
    rows = max(MIN_CHUNK_TOKENS, TARGET_CHUNK_BYTES // (2 * max(1, d_mlp)))
    return max(context_len, rows // context_len * context_len)


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    return -(-n_rows // chunk_rows)


def chunk_codec_layout(arr) -> str | None:
    """The chunk-file format of the zarr array ``arr`` when it is one neurobrowse reads and writes without zarr's
    pipeline, else None: ``"zstd"`` for bytes (little endian) -> zstd -> crc32c (the index arrays),
    ``"raw"`` for bytes (little endian) -> crc32c (the dense activations, as ``StoreWriter`` writes
    them); default chunk keys either way."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

    c = arr.metadata.codecs
    if not (isinstance(arr.metadata.chunk_key_encoding, DefaultChunkKeyEncoding) and len(c) in (2, 3)
            and isinstance(c[0], BytesCodec) and (c[0].endian is None or c[0].endian.value == "little")
            and isinstance(c[-1], Crc32cCodec)):
        return None
    if len(c) == 2:
        return "raw"
    return "zstd" if isinstance(c[1], ZstdCodec) else None


def codecs(dtype: str) -> list:
    """Bytes-to-bytes codecs for an array: zstd for float data, then a Crc32c checksum (always last)."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    if dtype in ("float16", "float32", "float64", "int32", "int64", "uint8"):
        return [ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()]
    return [Crc32cCodec()]


# Completion markers: done/{array} is uint64 [chunk] with chunk shape (1,), so concurrent writers
# never share a marker chunk. Non-zero = that chunk of {array} is on disk (written, fsynced), and the
# value records the chunk file's Crc32c (store.format.chunkio.marker_value), which binds the file to its
# place. Stores of the first release have uint8 markers (1 = written).
MARKER_DIM = "chunk"  # per-token arrays' markers: one per token chunk


def marker_dim(array_name: str) -> str:
    """Dimension name of the markers of ``array_name``: "chunk" for the per-token arrays (all of one
    length), a name of its own for the others, so that the store opens as one xarray DataTree (a
    dimension name has one length in a group and its subgroups)."""
    if array_name == TOKENIZER_JSON:
        return f"{TOKENIZER_JSON}_chunk"
    if array_name.startswith(LOGIT_GROUP + "/"):
        return f"{LOGIT_GROUP}_chunk"
    return MARKER_DIM
# Logit effects, under logit/blocks.{l}.mlp/: [neuron, K_LOGIT]; tokens int32, values float32.
LOGIT_DIMS = ("neuron", "rank")
LOGIT_DTYPES = {"up_tokens": "int32", "up_values": "float32", "down_tokens": "int32", "down_values": "float32"}
# Extra manifest keys (beyond MANIFEST_KEYS): checkpoint_path (absolute, at record time), layers,
# corpus_dir, record options.
