"""Helpers more than one test module uses (no test module imports another one's helpers).

- synthetic stores written with the real StoreWriter: ``synthetic_data`` / ``synthetic_writer`` /
  ``write_all`` (two hooks, 48 neurons, random values) and ``write_synthetic_store`` (given activations)
- ``assert_same_index``: two stores' indexes equal, float sums to rounding
- ``pass1`` / ``brute_order``: a pass-1 partial over chunks of an array, and the brute-force order it must match
- ``kill_9_when`` / ``kill_9_after_lines``: a real kill -9 of a child process at a condition, never after a fixed wait
- the desktop app's waits: ``WAIT_MS``, ``main_window``, ``wait_page``, ``click_row`` (Qt imported when used)

The tiny real artifacts (corpus, models, stores) are built by tests/builders.py; fixtures live in conftest.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np

from store import schema

# ---- synthetic stores ------------------------------------------------------------------------------

HOOKS = ["blocks.0.mlp.hook_post", "blocks.0.mlp.hook_mid"]
CFG = {"d_mlp": 48, "n_layers": 1, "d_vocab": 300, "act_fn": "solu_ln", "d_model": 16, "n_ctx": 32}
TOKENIZER = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}})


def synthetic_data(n_tokens=32 * 10, seed=0):
    """(tokens int32 [n], doc starts uint8 [n], {hook: float16 [n, d_mlp]}) at random, for HOOKS and CFG."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CFG["d_vocab"], n_tokens).astype(np.int32)
    docs = (rng.random(n_tokens) < 0.01).astype(np.uint8)
    acts = {h: rng.standard_normal((n_tokens, CFG["d_mlp"])).astype(np.float16) for h in HOOKS}
    return tokens, docs, acts


def synthetic_writer(path, n_tokens=320, **kw):
    """A StoreWriter of HOOKS / CFG at ``path`` (contexts of 32, chunks of 128 tokens unless ``kw`` says)."""
    from store.format.writer import StoreWriter

    args = dict(model_config=CFG, hooks=HOOKS, n_tokens=n_tokens, context_len=32, tokenizer_json=TOKENIZER,
                manifest={"checkpoint_hash": "abc", "checkpoint_path": "/nowhere", "corpus_manifest_hash": "c1",
                          "record_command": f"neurobrowse record CK --out {path}"},
                chunk_tokens=128)
    args.update(kw)
    return StoreWriter.create_or_resume(path, **args)


def write_all(w, tokens, docs, acts, chunks=None):
    """Write ``chunks`` (default: all) of tokens, doc starts and each hook's activations, and logit effects."""
    for i in chunks if chunks is not None else range(w.n_chunks):
        a, b = w.chunk_rows(i)
        w.write_chunk(schema.TOKENS, i, tokens[a:b])
        w.write_chunk(schema.DOC_STARTS, i, docs[a:b])
        for h in HOOKS:
            w.write_chunk(h, i, acts[h][a:b])
    k = schema.K_LOGIT
    w.write_logit_effects(0, np.zeros((CFG["d_mlp"], k), np.int32), np.ones((CFG["d_mlp"], k), np.float32),
                          np.zeros((CFG["d_mlp"], k), np.int32), -np.ones((CFG["d_mlp"], k), np.float32))


def write_synthetic_store(path, acts: dict, tokens: np.ndarray, vocab: int, context_len: int = 32,
                          chunk_tokens: int = 256, act_fn: str = "gelu") -> Path:
    """A real store written with StoreWriter from given activations ({hook: float16 [n, N]}) and tokens."""
    from tokenizers import Tokenizer, models

    from store.format.writer import StoreWriter

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    hooks = list(acts)
    n, N = next(iter(acts.values())).shape
    cfg = {"d_mlp": N, "n_layers": 1, "d_vocab": vocab, "act_fn": act_fn, "d_model": 8, "n_ctx": context_len}
    w = StoreWriter.create_or_resume(path, model_config=cfg, hooks=hooks, n_tokens=n, context_len=context_len,
                                     tokenizer_json=tok.to_str(), manifest={"checkpoint_hash": "synthetic"},
                                     chunk_tokens=chunk_tokens, fsync=False)
    for c in range(w.n_chunks):
        a, b = w.chunk_rows(c)
        w.write_chunk(schema.TOKENS, c, tokens[a:b])
        w.write_chunk(schema.DOC_STARTS, c, np.zeros(b - a, np.uint8))
        for h in hooks:
            w.write_chunk(h, c, acts[h][a:b])
    z = np.zeros((N, schema.K_LOGIT), np.int32)
    w.write_logit_effects(0, z, z.astype(np.float32), z, z.astype(np.float32))
    w.finish()
    return Path(path)


# ---- comparing indexes -----------------------------------------------------------------------------

MOMENTS = ("mean", "var", "skewness", "kurtosis", "sim_score")  # summed in floating point: equal to rounding


def assert_same_index(a, b, *, close=MOMENTS, rtol: float = 1e-6, atol: float = 1e-6, hooks=None, skip=()) -> None:
    """Every index array (schema.INDEX_ARRAYS, less ``skip``) of every hook of stores ``a`` and ``b``
    (Stores or paths) has the same shape, dtype and values; the arrays in ``close`` to rtol / atol.
    ``hooks``: only these (else both stores must have the same hooks)."""
    from store.format.reader import as_store

    sa, sb = as_store(a), as_store(b)
    if hooks is None:
        assert sa.hooks == sb.hooks
    for hook in hooks or sa.hooks:
        assert sa.is_indexed(hook) and sb.is_indexed(hook), hook
        for name in schema.INDEX_ARRAYS:
            if name in skip:
                continue
            x = np.asarray(sa.index_array(hook, name)[...])
            y = np.asarray(sb.index_array(hook, name)[...])
            assert x.shape == y.shape and x.dtype == y.dtype, (hook, name)
            if name in close:
                np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{hook}/{name}")
            else:
                assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{hook}/{name} differs"


# ---- the index kernels against brute force ---------------------------------------------------------

KERNEL_CTX = 64  # context length of the kernel tests' arrays


def pass1(x, toks, vocab, c0, c1, R=512, k=8):
    """The canonical pass-1 partial of chunks c0..c1 (R rows each) of float16 [token, neuron] ``x``."""
    from store.index import PartialIndex

    p = PartialIndex.empty("h", k, x.shape[1], vocab)
    for c in range(c0, c1):
        p.update(np.ascontiguousarray(x[c * R:(c + 1) * R]).view(np.uint16), toks[c * R:(c + 1) * R], c * R,
                 KERNEL_CTX)
    p.ranges = [(c0, c1)]
    return p.canonical()


def brute_order(x, top):
    """Per neuron, positions ranked by value (desc for top, asc for bottom), lower position first on ties."""
    from store.index.kernels.f16 import f16_keys_np

    xf = x.astype(np.float32)
    pos = np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape)
    # -0 < +0 as the key order says: compare float16 keys, not floats
    keys = f16_keys_np(x.view(np.uint16))
    return np.lexsort((pos, -keys if top else keys), axis=0).T, xf


# ---- a real kill -9 ----------------------------------------------------------------------------------


def kill_9_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, what: str,
                poll: float = 0.002) -> None:
    """Poll ``ready()`` (a condition on disk) until it holds, then SIGKILL ``proc`` and wait for it. Fails
    naming ``what`` when the process ended first (with the end of its stderr, when piped) or ``timeout``
    seconds passed (a guard against a hang, never a fixed wait)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr is not None else ""
                err = err.decode(errors="replace") if isinstance(err, bytes) else err
                raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(poll)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def kill_9_after_lines(proc: subprocess.Popen, stop: Callable[[list[list[str]]], bool]) -> list[list[str]]:
    """Read the child's stdout line by line (each split into words) until ``stop(lines so far)``, then
    SIGKILL it and wait. Returns the lines read (the child must print with flush=True)."""
    seen: list[list[str]] = []
    try:
        for line in proc.stdout:
            seen.append(line.split())
            if stop(seen):
                proc.send_signal(signal.SIGKILL)
                break
    except BaseException:
        proc.kill()  # a failing ``stop``: no child left behind
        raise
    finally:
        proc.wait()
        proc.stdout.close()
    return seen


# ---- the desktop app (offscreen) -------------------------------------------------------------------

WAIT_MS = 60_000


def main_window(windows, path, **kw):
    """A MainWindow from the leak-checking ``windows`` fixture with the store at ``path`` opened."""
    from neurobrowse.qt.main_window import MainWindow

    w = windows(MainWindow)
    w.open_store(path, **kw)
    return w


def wait_page(qtbot, w, neuron=None, hook=None):
    """Wait until the browser shows a page (of ``neuron`` / ``hook`` when given); returns it."""
    b = w.browser
    qtbot.waitUntil(lambda: b.page is not None and (neuron is None or b.page.ref.neuron == neuron)
                    and (hook is None or b.page.ref.hook == hook), timeout=WAIT_MS)
    return b.page


def click_row(qtbot, view, row):
    """A real mouse click on ``row`` of a table view (scrolled into sight first)."""
    from PySide6.QtCore import Qt

    idx = view.model().index(row, 1)
    view.scrollTo(idx)
    rect = view.visualRect(idx)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
