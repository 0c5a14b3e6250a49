"""The whole loop in one call, each step cached and resumable: what `neurobrowse demo` (and `make demo`) runs.

    corpus -> tokenizer -> GeLU + SoLU-LN pair -> record both -> index both -> compare window

Artifacts go under ``DemoConfig.workdir`` (default ``./artifacts/demo``, or ``$NEUROBROWSE_DEMO_DIR``)::

    WORKDIR/corpus/            token shards + tokenizer.json + manifest.json   (solu_core.corpus)
    WORKDIR/models/<act_fn>/   checkpoints                                     (solu_core.train)
    WORKDIR/stores/<act_fn>/   recorded and indexed activation stores         (solu_core.record, store.index)
    WORKDIR/demo.png           the headless screenshot (--offscreen / no display)

Every step asks its own library whether its output is already there (a finished corpus is reused,
finished models are skipped and unfinished ones resume from their last checkpoint, a complete store is
not re-recorded, indexed hooks are not re-indexed), so a second run reaches the window in seconds and
an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

ACT_FNS = ("gelu", "solu_ln")
DEFAULT_WORKDIR = "artifacts/demo"
# tokens recorded per model: enough for stable top-k and scores, small enough for the 10-minute budget
DEFAULT_TOKENS = {"tiny": 20_480, "demo": 262_144}
# torch CPU threads for training and recording: fixed, because the thread count changes the order of
# floating-point reductions and so the weights and activations (docs/verdict.md, "Reproducible demo")
DEMO_THREADS = 1


@dataclass
class DemoConfig:
    workdir: Path = field(default_factory=lambda: Path(os.environ.get("NEUROBROWSE_DEMO_DIR", DEFAULT_WORKDIR)))
    preset: str = "demo"  # solu_core.train preset: "tiny" (seconds) or "demo" (minutes, the real demo)
    n_tokens: int | None = None  # tokens recorded per model (None: DEFAULT_TOKENS[preset] or 262,144)
    include_prose: bool = True  # add English prose found on this machine (Debian docs) to the stdlib source
    seed: int = 0  # the pair's initial weights and data order (another seed: another demo pair on the same corpus)
    controls: tuple[str, ...] = ("random",)  # random-model controls recorded beside the pair (() for none)
    device: str = "auto"  # CUDA when present, else CPU
    progress: bool = True  # progress bars for the long steps (store.progress)
    features: bool = False  # also train and index the demo's dictionaries (docs/features.md): minutes more


# the dictionaries `demo --features` trains: the paper's question, same width and k on both sides of the LN
DEMO_DICTIONARIES = (("gelu", "blocks.0.mlp.hook_post"), ("solu_ln", "blocks.0.mlp.hook_mid"),
                     ("solu_ln", "blocks.0.mlp.hook_post"))


@dataclass
class DemoResult:
    corpus: Path
    models: dict[str, Path]
    stores: dict[str, Path]
    seconds: dict[str, float]  # wall time of each step this run (near zero when cached)


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[demo] {msg}", flush=True)


def corpus_config(preset: str, include_prose: bool):
    from solu_core.train import get_preset

    p = get_preset(preset)
    return corpus_config_for(p.vocab_size, p.corpus_max_mb, include_prose and preset != "tiny")


def corpus_config_for(vocab_size: int, max_mb: float | None, include_prose: bool):
    """The demo's corpus: the stdlib's source, with the English prose found on this machine mixed in at
    DEMO_PROSE_SHARE when ``include_prose`` (`neurobrowse replicate` builds its corpus the same way)."""
    from solu_core.corpus.config import DEMO_PROSE_SHARE, CorpusConfig

    return CorpusConfig(include_stdlib=True, include_prose=include_prose, vocab_size=vocab_size, max_mb=max_mb,
                        seed=0, prose_share=DEMO_PROSE_SHARE if include_prose else None)


def run_pipeline(cfg: DemoConfig) -> DemoResult:
    """Build (or find) everything the compare window needs. Safe to interrupt and re-run."""
    from solu_core.corpus.build import build_corpus
    from solu_core.corpus.folder import load_split
    from solu_core.record import record
    from solu_core.record_config import CorpusText, RecordConfig
    from solu_core.train import train_pair
    from store.errors import StoreError
    from store.index import index_store
    from store.format.reader import Store

    work = Path(cfg.workdir).expanduser().absolute()
    work.mkdir(parents=True, exist_ok=True)
    secs: dict[str, float] = {}
    corpus_dir, models_dir, stores_dir = work / "corpus", work / "models", work / "stores"

    import torch

    torch.set_num_threads(DEMO_THREADS)  # training and recording alike: a fixed count is a reproducible demo
    t = time.perf_counter()
    _say(f"1/4 corpus and tokenizer -> {corpus_dir}", cfg.progress)
    build_corpus(corpus_dir, corpus_config(cfg.preset, cfg.include_prose), progress=cfg.progress)
    secs["corpus"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(f"2/4 training the {cfg.preset} GeLU + SoLU-LN pair -> {models_dir}", cfg.progress)
    models = train_pair(corpus_dir, models_dir, preset=cfg.preset, act_fns=ACT_FNS, device=cfg.device,
                        progress=cfg.progress, seed=cfg.seed, threads=DEMO_THREADS,
                        inits=("trained", *cfg.controls))
    secs["train"] = time.perf_counter() - t

    n_tokens = cfg.n_tokens or DEFAULT_TOKENS.get(cfg.preset, 262_144)
    val = len(load_split(corpus_dir, "val").tokens)
    if n_tokens > val:
        _say(f"the held-out split has {val:,} tokens; recording {val:,} instead of {n_tokens:,}", cfg.progress)
        n_tokens = val
    stores: dict[str, Path] = {}
    from solu_core.model import pick_device

    # on CUDA the recorder indexes too, pass 1 on the GPU beside the model (record --index, torch backend);
    # on the CPU the demo records, then indexes (unchanged: the same stores, bit for bit, as before)
    index_while_recording = pick_device(cfg.device).type == "cuda"
    t = time.perf_counter()
    for act in [a for a in models if a in ACT_FNS] + [a for a in models if a not in ACT_FNS]:
        out = stores_dir / act
        try:
            done = Store.open(out).complete
        except StoreError:
            done = False
        if not done:
            _say(f"3/4 recording {act} activations ({n_tokens:,} held-out tokens) -> {out}", cfg.progress)
            record(models[act], out, RecordConfig(text=CorpusText(corpus_dir), n_tokens=n_tokens, device=cfg.device,
                                                  index=index_while_recording), progress=cfg.progress)
        stores[act] = out
    secs["record"] = time.perf_counter() - t

    t = time.perf_counter()
    for act, out in stores.items():
        st = Store.open(out)
        if not all(st.is_indexed(h) for h in st.recorded_hooks):
            _say(f"4/4 indexing {act} (top-k, quantile samples, histograms, scores)", cfg.progress)
            index_store(out, progress=cfg.progress)
    secs["index"] = time.perf_counter() - t
    if cfg.features:
        from solu_core.dictionary.index import index_features
        from solu_core.dictionary.train import train_dictionary

        t = time.perf_counter()
        for act, hook in DEMO_DICTIONARIES:
            if act not in stores:
                continue
            _say(f"5/5 dictionary 8x, k 32 on {act} {hook} (train, then index its features)", cfg.progress)
            r = train_dictionary(stores[act], hook, width=8, k=32, device=cfg.device, progress=cfg.progress)
            index_features(stores[act], r.feature_hook, device=cfg.device, progress=cfg.progress)
        secs["features"] = time.perf_counter() - t
    _say("ready: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), cfg.progress)
    return DemoResult(corpus_dir, dict(models), stores, secs)
