"""What a recording records: ``RecordConfig`` (one value instead of a long argument list) and the
text it runs the model over, one of four text-source values:

- ``CorpusText(dir)``   a neurobrowse checkpoint's corpus, its validation split (dir None: the corpus the
                        checkpoint was trained on, from its metadata)
- ``TextFiles(paths)``  files, folders and .jsonl files (``jsonl_field``), tokenized with the model's tokenizer
- ``Documents(docs)``   strings in memory (``record_model``)
- ``TokenIds(tokens)``  token ids in memory: [n] one stream or [n_contexts, ctx] (``record_model``)

``solu_core.record.record(model, out, RecordConfig(...))`` and ``solu_core.dask_record.record_dask`` take it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union


@dataclass(frozen=True)
class CorpusText:
    """A checkpoint's corpus validation split (``dir`` None: the corpus in the checkpoint's metadata)."""

    dir: Path | None = None


@dataclass(frozen=True)
class TextFiles:
    """Files, folders and .jsonl files (the ``jsonl_field`` of each line) to record."""

    paths: tuple[Path, ...]  # any iterable of paths or strings, kept as a tuple of Paths
    jsonl_field: str = "text"

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(Path(t) for t in self.paths))


@dataclass(frozen=True)
class Documents:
    """Documents given as strings."""

    docs: tuple[str, ...]


@dataclass(frozen=True)
class TokenIds:
    """Token ids given in memory: [n] one stream, or [n_contexts, ctx] (documents start at the separator)."""

    tokens: Any


TextSource = Union[CorpusText, TextFiles, Documents, TokenIds]
INDEX_BACKENDS = ("auto", "numba", "torch")  # RecordConfig.index_backend


def text_source(texts=None, jsonl_field: str = "text", corpus_dir=None) -> TextSource:
    """The text source the record command's options name: ``--text PATH ...`` (with ``--jsonl-field``), else
    the checkpoint's corpus (``--corpus DIR`` or its own)."""
    if texts:
        return TextFiles(texts, jsonl_field)
    return CorpusText(Path(corpus_dir) if corpus_dir is not None else None)


@dataclass(frozen=True)
class RecordConfig:
    """How to record (solu_core.record.record). Defaults: a checkpoint's own corpus, 1M tokens."""

    text: TextSource = field(default_factory=CorpusText)
    n_tokens: int = 1 << 20  # tokens to record (rounded down to whole contexts; at most what the text holds)
    context: int | None = None  # tokens per context (default: a checkpoint's n_ctx; other models min(n_ctx, 1024))
    layers: list[int] | None = None  # which layers' MLP hooks (default: every layer)
    hooks: list[str] | None = None  # which hooks (default: hook_post, plus hook_mid for SoLU-LN)
    batch_size: int | None = None  # contexts per forward pass (default: one store chunk's worth)
    chunk_tokens: int | None = None  # tokens per store chunk (default: schema.chunk_tokens_for)
    device: str = "auto"
    allow_download: bool = False  # TransformerLens weights from the network when not in the local cache
    fsync: bool = True
    threaded: bool = True  # write chunks on a background thread while the next batch runs (False: inline)
    index: bool = False  # index while recording (store.index.StreamIndexer): the index of `neurobrowse index`
    dense: bool = True  # keep the dense activations (False needs ``index``: tokens, logit effects and the index)
    index_config: Any = None  # store.index.IndexConfig (k, seed, window) for ``index``
    # where ``index`` runs pass 1 (top/bottom-k, distinct lists, histogram, moments, per-token sums):
    # "torch" on the model's device beside the forward pass (solu_core.device_index; only each chunk's
    # partial result comes to the host), "numba" in the host kernels on the writer thread, "auto" torch
    # when the model runs on CUDA, else numba. The same index either way (moments to float rounding)
    index_backend: str = "auto"

    def replace(self, **changes) -> "RecordConfig":
        return dataclasses.replace(self, **changes)


__all__ = ["INDEX_BACKENDS", "CorpusText", "Documents", "RecordConfig", "TextFiles", "TextSource", "TokenIds",
           "text_source"]
