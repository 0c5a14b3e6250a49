"""The byte-level BPE tokenizer (HF tokenizers): trained on the train split with ``<|endoftext|>`` as id
0, or an existing tokenizer.json; the token dtype its vocabulary needs.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
from store.errors import CorpusError
from solu_core.corpus.config import EOT


def train_tokenizer(texts: list[str], vocab_size: int, progress: bool = True):
    """A byte-level BPE (GPT-2 style) with <|endoftext|> as id 0. Returns a tokenizers.Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def eot_id(tokenizer) -> int:
    i = tokenizer.token_to_id(EOT)
    if i is None:
        raise CorpusError(f"the tokenizer has no {EOT} token; it was not built by `neurobrowse corpus`")
    return i


def _token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def load_tokenizer_file(path: str | Path):
    """An existing tokenizer.json (HF tokenizers) for ``corpus --tokenizer``; it must have <|endoftext|>."""
    from tokenizers import Tokenizer

    p = Path(path).expanduser()
    try:
        tok = Tokenizer.from_file(str(p))
    except FileNotFoundError:
        raise CorpusError(f"--tokenizer {p} does not exist; pass a tokenizer.json file") from None
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise CorpusError(f"--tokenizer {p} is not a tokenizers JSON file ({e}); pass a tokenizer.json") from e
    if tok.token_to_id(EOT) is None:
        raise CorpusError(f"--tokenizer {p} has no {EOT} token, which separates a corpus's documents; use a "
                          f"tokenizer that has it (GPT-2 / Pythia style) or train one (leave out --tokenizer)")
    return tok
