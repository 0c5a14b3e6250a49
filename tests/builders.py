"""Builders for real (tiny) test artifacts: a corpus of real text, a GeLU + SoLU-LN pair trained for
seconds with the `tiny` preset, stores recorded from them and indexed.

Everything is built into one directory and reused when it is already there (the corpus and the
trained models are skipped by their own builders; a finished store is kept), so a test session
pays the ~10-40 s once.
"""

from __future__ import annotations

from pathlib import Path
from solu_core.record_config import CorpusText, RecordConfig

TINY_CORPUS = dict(include_stdlib=True, vocab_size=512, max_mb=1.0, val_fraction=0.1, seed=0)
TINY_TOKENS = 20_480  # recorded tokens per store (320 contexts of 64)
TINY_CHUNK_TOKENS = 4096  # several chunks per store, so chunked code paths are exercised
LEAF_CHUNK_TOKENS = 512  # Dask recordings: 40 chunks, leaf 0 (the first 16, which fix the sample units) and more


def build_tiny_corpus(root: str | Path) -> Path:
    """A ~1 MB corpus of the Python stdlib's source with a 512-token BPE (about 30k val tokens)."""
    from solu_core.corpus.config import CorpusConfig
    from solu_core.corpus.build import build_corpus

    out = Path(root) / "corpus"
    build_corpus(out, CorpusConfig(**TINY_CORPUS), progress=False)
    return out


def build_tiny_models(root: str | Path, act_fns=("gelu", "solu_ln")) -> dict[str, Path]:
    """A fair pair trained with the `tiny` preset on one thread; returns {act_fn: checkpoint dir}."""
    from solu_core.train import train_pair

    corpus = build_tiny_corpus(root)
    return train_pair(corpus, Path(root) / "models", preset="tiny", act_fns=act_fns, progress=False,
                      device="cpu", threads=1)  # one thread: the same weights however busy the machine is


def build_tiny_store(root: str | Path, act_fn: str = "solu_ln", n_tokens: int = TINY_TOKENS, index: bool = True,
                     chunk_tokens: int = TINY_CHUNK_TOKENS) -> Path:
    """A recorded (and, with ``index``, indexed) store of a tiny real model under ``root/stores/<act_fn>``."""
    from solu_core.record import record
    from store.format.reader import Store

    root = Path(root)
    models = build_tiny_models(root, act_fns=(act_fn,))
    out = root / "stores" / act_fn
    record(models[act_fn], out, RecordConfig(text=CorpusText(root / "corpus"), n_tokens=n_tokens, device="cpu",
                                             chunk_tokens=chunk_tokens), progress=False)
    if index:
        from store.index import index_store

        store = Store.open(out)
        if not all(store.is_indexed(h) for h in store.hooks):
            index_store(out, progress=False)
    return out


def build_tiny_stores(root: str | Path, index: bool = True) -> dict[str, Path]:
    """{"gelu": store, "solu_ln": store} from one corpus and one fairly trained pair."""
    build_tiny_models(root)  # both at once: same init and data order
    return {a: build_tiny_store(root, a, index=index) for a in ("gelu", "solu_ln")}


def record_index_dask(tiny_root, out, client, act_fn="solu_ln", dense=False, stats=None):
    """``record --index`` of a tiny model on a Dask ``client`` in LEAF_CHUNK_TOKENS chunks, every leaf saving
    its results (leaf 0, then 8 leaves of 3 groups); also run in a child process that a test kills."""
    from solu_core.dask_record import DaskRecordConfig, record_dask
    from store.index import IndexConfig

    return record_dask(Path(tiny_root) / "models" / act_fn, out, client,
                       RecordConfig(text=CorpusText(Path(tiny_root) / "corpus"), n_tokens=TINY_TOKENS, device="cpu",
                                    chunk_tokens=LEAF_CHUNK_TOKENS, index=True, dense=dense,
                                    index_config=IndexConfig(checkpoint_every_s=0.0)),
                       progress=False, stats=stats, config=DaskRecordConfig(groups_per_task=3))


def run_cli(argv: list, env: dict | None = None):
    """Run the real CLI entry point in this process (no interpreter start-up per call) with ``env`` added
    to the environment meanwhile; capture its output (not a terminal: plain text). The one way tests run
    a verb; ``cli_command`` is for the tests that need a separate process (to kill it)."""
    import contextlib
    import io
    import os
    from types import SimpleNamespace
    from unittest import mock

    from neurobrowse.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, env or {}):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def cli_command(*args) -> list[str]:
    """The command line that runs ``neurobrowse ARGS`` in a new Python process (for tests that kill it)."""
    import sys

    return [sys.executable, "-m", "neurobrowse", *map(str, args)]
