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


def hook_name(layer: int, hook: str = "hook_post") -> str:
    """TransformerLens hook name, e.g. hook_name(0) == 'blocks.0.mlp.hook_post'."""
    return f"blocks.{layer}.mlp.{hook}"


def parse_hook_name(name: str) -> tuple[int, str]:
    """'blocks.3.mlp.hook_mid' -> (3, 'hook_mid'); a clear ValueError otherwise."""
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != "blocks" or not parts[1].isdigit() or parts[2] != "mlp":
        raise ValueError(f"{name!r} is not an MLP hook name like 'blocks.0.mlp.hook_post'")
    return int(parts[1]), parts[3]


def done_path(array_name: str) -> str:
    """Path of the completion-marker array for a per-token array."""
    return f"{DONE_GROUP}/{array_name}"


def logit_path(layer: int) -> str:
    return f"{LOGIT_GROUP}/blocks.{layer}.mlp"


LOGIT_ARRAYS = ("up_tokens", "up_values", "down_tokens", "down_values")


def index_path(hook: str) -> str:
    return f"{INDEX_GROUP}/{hook}"


# ---- index arrays, under index/{hook}/ ----------------------------------------------------------
# name -> (dtype, dimension names). Sizes: k = top-k, W = CONTEXT_BEFORE + 1 + CONTEXT_AFTER,
# B = len(SAMPLE_BINS), S = SAMPLES_PER_BIN, H = histogram bins, T = TOP_TOKENS, V = vocabulary.
CONTEXT_BEFORE = 24  # tokens of context kept before a firing
CONTEXT_AFTER = 8  # and after it; window clipped at context boundaries, padded with token -1
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
    "token_sum": ("float32", ("vocab", "neuron")),  # sum of activation per current token id
    "token_count": ("int64", ("vocab",)),  # occurrences of each token id
    "top_token_ids": ("int32", ("neuron", "top_token")),  # tokens with the highest mean activation
    "top_token_means": ("float32", ("neuron", "top_token")),
    "token_rule_score": ("float32", ("neuron",)),  # see store.scores
    "sim_score": ("float32", ("neuron",)),  # see store.scores
}
DENSITY_THRESHOLD = 0.0
