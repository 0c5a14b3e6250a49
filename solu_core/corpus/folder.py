"""A built corpus read back: its manifest (checked), its hash, its tokenizer and a split's tokens and
document starts (memory-mapped shards).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from store.errors import CorpusError
from solu_core.corpus.config import FORMAT, FORMAT_VERSION, SPLITS


@dataclass
class TokenSplit:
    """One split's tokens. ``tokens`` may be a read-only memmap."""

    tokens: np.ndarray  # [n_tokens] uint16 (uint32 for vocabularies >= 65536)
    doc_starts: np.ndarray  # [n_tokens] bool: True at each document's leading <|endoftext|>

    def __len__(self) -> int:
        return len(self.tokens)


def read_manifest(corpus_dir: str | Path) -> dict:
    path = Path(corpus_dir).expanduser() / "manifest.json"
    if not path.exists():
        raise CorpusError(f"{path} not found: {corpus_dir} is not a corpus; "
                          f"build one with `neurobrowse corpus --out {corpus_dir}`")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path} is damaged ({e}); rebuild the corpus with `neurobrowse corpus --force`") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CorpusError(f"{path} is not a neurobrowse corpus manifest; rebuild with `neurobrowse corpus`")
    if m.get("format_version") != FORMAT_VERSION:
        raise CorpusError(
            f"{path} has corpus format version {m.get('format_version')}, this code reads {FORMAT_VERSION}; "
            "rebuild with `neurobrowse corpus --force`"
        )
    return m


def corpus_manifest_hash(corpus_dir: str | Path) -> str:
    """sha256 of manifest.json: names the exact corpus (sources, split, tokenizer, token counts)."""
    read_manifest(corpus_dir)  # validates
    return hashlib.sha256((Path(corpus_dir).expanduser() / "manifest.json").read_bytes()).hexdigest()


def load_tokenizer(corpus_dir: str | Path):
    """The corpus's tokenizers.Tokenizer."""
    from tokenizers import Tokenizer

    path = Path(corpus_dir).expanduser() / "tokenizer.json"
    try:
        return Tokenizer.from_str(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CorpusError(f"{path} not found; rebuild the corpus with `neurobrowse corpus --force`") from e
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise CorpusError(f"{path} is not a valid tokenizer ({e}); "
                          "rebuild the corpus with `neurobrowse corpus --force`") from e


def load_split(corpus_dir: str | Path, split: str) -> TokenSplit:
    """Tokens and document starts of one split. One shard is memory-mapped; several are concatenated."""
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(corpus_dir).expanduser()
    m = read_manifest(root)
    info = m["splits"][split]
    toks, starts = [], []
    for shard in info["shards"]:
        tpath = root / shard["tokens"]
        opath = tpath.with_name(tpath.name.replace("tokens_", "doc_offsets_"))
        try:
            t = np.load(tpath, mmap_mode="r")
            o = np.load(opath)
        except (OSError, ValueError) as e:
            raise CorpusError(f"{tpath} is missing or damaged ({e}); "
                              "rebuild the corpus with `neurobrowse corpus --force`") from e
        if len(t) != shard["n_tokens"] or len(o) != shard["n_docs"]:
            raise CorpusError(
                f"{tpath} holds {len(t)} tokens, the manifest says {shard['n_tokens']}; "
                "rebuild the corpus with `neurobrowse corpus --force`"
            )
        s = np.zeros(len(t), dtype=bool)
        s[o] = True
        toks.append(t)
        starts.append(s)
    if not toks:
        raise CorpusError(f"{root} has no {split} tokens; rebuild with more text")
    if len(toks) == 1:
        return TokenSplit(toks[0], starts[0])
    return TokenSplit(np.concatenate(toks), np.concatenate(starts))
