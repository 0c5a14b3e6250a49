"""What goes into a corpus (``CorpusConfig``) and the format's constants: its name and version, the
document separator ``<|endoftext|>`` (token id 0) and the splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from store.errors import CorpusError


FORMAT = "neurobrowse-corpus"


FORMAT_VERSION = 1


EOT = "<|endoftext|>"  # document separator and BOS; always token id 0


SPLITS = ("train", "val")


DEMO_PROSE_SHARE = 0.8  # the demo corpus: ~80% prose, ~20% code, like the data of TransformerLens's SoLU models


@dataclass
class CorpusConfig:
    """What goes into a corpus. Everything that changes the tokens is recorded in the manifest."""

    sources: list[str] = field(default_factory=list)  # extra files / folders / .jsonl files
    include_stdlib: bool = True  # the Python stdlib's own .py source (no tests)
    include_prose: bool = False  # add the PROSE_SOURCES present on this machine
    jsonl_field: str = "text"  # field holding the text in .jsonl sources
    vocab_size: int = 4096  # BPE vocabulary incl. <|endoftext|> and the 256 byte tokens
    val_fraction: float = 0.05  # share of documents held out for validation
    seed: int = 0  # decides the split, the document order and the --max-mb subset
    max_mb: float | None = None  # cap on UTF-8 text bytes (a seeded random subset of documents)
    max_doc_chars: int = 100_000  # longer documents are cut at line breaks into parts
    skip_generated: bool = True  # leave out machine-generated tables (looks_generated)
    prose_share: float | None = None  # e.g. 0.8: cap code (stdlib) or prose so prose is this share of bytes
    shard_tokens: int = 1 << 24  # tokens per shard file (32 MiB as uint16)
    tokenizer_file: str | None = None  # an existing tokenizer.json to use instead of training one

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise CorpusError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.vocab_size < 257 + 1:
            raise CorpusError(f"vocab_size must be at least 258 (256 bytes + {EOT} + 1 merge), got {self.vocab_size}")
        if self.max_mb is not None and self.max_mb <= 0:
            raise CorpusError(f"--max-mb must be positive, got {self.max_mb}")
        if self.prose_share is not None and not 0 < self.prose_share < 1:
            raise CorpusError(f"prose_share must be between 0 and 1 (e.g. 0.8), got {self.prose_share}")
