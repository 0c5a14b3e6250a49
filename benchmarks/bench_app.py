"""Desktop app figures (offscreen Qt, real widgets):

    .venv/bin/python benchmarks/bench_app.py                     # all parts
    .venv/bin/python benchmarks/bench_app.py --parts switch --presses 300

Parts:
  startup  process start -> main window shown with a store open and the first neuron page painted
           (a fresh Python process each time; median of --repeats) on a real tiny store.
  switch   on an index at full size, 10M tokens x 2048 neurons (index arrays synthesized at full size
           with the indexer's own array writer by benchmarks/bench_store.py; the dense activations are
           not written: the browser never reads them): keypress -> the new neuron's page painted, for
           J (next neuron: sequential, prefetch helps) and for random jumps (cold, no cache); the
           longest event-loop stall while browsing, from a 5 ms QTimer heartbeat; the app's memory
           (RSS) with that store open, before and after browsing.

  expand   (--expand-store STORE) clicking a snippet's 'context' link -> its whole recorded context
           painted in place, with the store's dense chunks, token ids and document starts dropped from
           the page cache (posix_fadvise DONTNEED) before each click.

Targets (issue 4): startup <= 2 s; p95 keypress-to-painted <= 50 ms; longest stall <= 100 ms.
Issue 13: the same with the 64 / 16 windows and distinct lists; expand p95 <= 150 ms (cold cache).
Results go to benchmarks/out/bench_app.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

CHILD = r"""
import os, sys, time
t_import = time.time()
sys.path.insert(0, {root!r})
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QEvent, QObject
from neurobrowse.qt import app
qapp = windows.ensure_app(offscreen=True)
win = windows.open_main_window({store!r}, settings=smoke.scratch_settings())
win.resize(1600, 950)
win.show()
painted = []
class F(QObject):
    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.Paint and win.browser.page is not None and not painted:
            painted.append(time.time())
        return False
f = F()
win.page.top_view.viewport().installEventFilter(f)
smoke.wait_for(lambda: bool(painted), 60)
print("T_IMPORT", t_import)
print("T_PAINTED", painted[0] if painted else -1)
win.close()
"""


def bench_startup(store: Path, repeats: int) -> dict:
    times, py_start = [], []
    for _ in range(repeats):
        t0 = time.time()
        r = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), store=str(store))],
                           capture_output=True, text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        vals = dict(line.split() for line in r.stdout.splitlines() if line.startswith("T_"))
        if "T_PAINTED" not in vals or float(vals["T_PAINTED"]) < 0:
            raise SystemExit(f"startup child failed:\n{r.stdout}\n{r.stderr[-2000:]}")
        times.append(float(vals["T_PAINTED"]) - t0)
        py_start.append(float(vals["T_IMPORT"]) - t0)
    return {"store": str(store), "repeats": repeats, "median_s": float(np.median(times)), "max_s": float(max(times)),
            "python_start_s": float(np.median(py_start)), "all_s": times}


def _full_size_store(work: Path, n_tokens: int, d: int, vocab: int) -> Path:
    path = work / "app_page_store"
    from store import schema

    from store.format.reader import Store

    fresh = (path / schema.index_path("blocks.0.mlp.hook_post") / "distinct_top_values").exists() and \
        Store.open(path).index_window("blocks.0.mlp.hook_post") == (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)
    if not fresh:  # none yet, or one of an older layout (shorter windows, no distinct lists)
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        spec = importlib.util.spec_from_file_location("bench_store", ROOT / "benchmarks" / "bench_store.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod._full_size_index(path, n_tokens, d, vocab, schema.DEFAULT_K)
    return path


def bench_switch(work: Path, n_tokens: int, d: int, vocab: int, presses: int) -> dict:
    import psutil
    from PySide6.QtCore import QElapsedTimer, QEvent, QObject, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from neurobrowse.qt import smoke, windows

    t = time.perf_counter()
    path = _full_size_store(work, n_tokens, d, vocab)
    build_s = time.perf_counter() - t
    proc = psutil.Process()
    _qapp = windows.ensure_app(offscreen=True)  # held for the run: the windows need a live QApplication
    rss_before_open = proc.memory_info().rss
    win = windows.open_main_window(path, settings=smoke.scratch_settings())
    win.resize(1600, 950)
    win.show()
    smoke.wait_for(lambda: win.browser.page is not None, 120)
    for box in list(win.error_boxes):  # the synthesized store is not marked complete: dismiss that notice
        box.close()
    rss_open = proc.memory_info().rss

    # heartbeat: the longest gap between 5 ms ticks is the longest event-loop stall
    clock = QElapsedTimer()
    clock.start()
    gaps, last = [], [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    hb = QTimer()
    hb.setInterval(5)
    hb.timeout.connect(tick)

    painted: list[float] = []
    target = [-1]

    class PaintWatch(QObject):
        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.Paint and win.browser.page is not None \
                    and win.browser.page.ref.neuron == target[0] and not painted:
                painted.append(time.perf_counter())
            return False

    watch = PaintWatch()
    win.page.top_view.viewport().installEventFilter(watch)

    def measure(action, expect) -> float:
        painted.clear()
        target[0] = expect
        t0 = time.perf_counter()
        action()
        smoke.wait_for(lambda: bool(painted), 30)
        return (painted[0] - t0) * 1e3 if painted else float("inf")

    b = win.browser
    if os.environ.get("BENCH_NO_PREFETCH"):
        b.session.prefetch = False
    if os.environ.get("BENCH_FIRST_BATCH"):  # snippets laid out before the first paint (SnippetView.FIRST_BATCH)
        from neurobrowse.qt.snippet_view import SnippetView

        SnippetView.FIRST_BATCH = int(os.environ["BENCH_FIRST_BATCH"])
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    win.activateWindow()  # window shortcuts (J) need the active window
    smoke.wait_for(win.isActiveWindow, 5)
    win.page.top_view.setFocus()
    hb.start()
    seq = []
    for _ in range(presses):
        cur = b.ref.neuron
        nxt = min(cur + 1, d - 1)
        seq.append(measure(lambda: QTest.keyClick(win, Qt.Key.Key_J), nxt))
        if nxt == d - 1:
            break
    rng = np.random.default_rng(0)
    rand = []
    for n in rng.integers(0, d, presses):
        n = int(n)
        if b.ref is not None and n == b.ref.neuron:
            continue
        rand.append(measure(lambda n=n: b.select(n), n))
    hb.stop()
    rss_after = proc.memory_info().rss
    win.close()
    QApplication.processEvents()
    seq_a, rand_a = np.array(seq), np.array(rand)
    return {
        "n_tokens": n_tokens, "neurons": d, "vocab": vocab, "store_build_s": build_s, "presses": len(seq),
        "next_p50_ms": float(np.percentile(seq_a, 50)), "next_p95_ms": float(np.percentile(seq_a, 95)),
        "next_max_ms": float(seq_a.max()),
        "random_p50_ms": float(np.percentile(rand_a, 50)), "random_p95_ms": float(np.percentile(rand_a, 95)),
        "random_max_ms": float(rand_a.max()),
        "longest_stall_ms": float(max(gaps)) if gaps else float("nan"),
        "stalls_over_100ms": int(sum(g > 100 for g in gaps)), "heartbeat_ticks": len(gaps),
        "longest_5_stalls_ms": sorted(gaps)[-5:],
        "rss_MB_before_open": rss_before_open / 2**20, "rss_MB_store_open": rss_open / 2**20,
        "rss_MB_after_browsing": rss_after / 2**20,
    }


def _drop_page_cache(folder: Path) -> None:
    """Ask the kernel to forget the cached pages of every file under ``folder`` (a cold read next time)."""
    for dirpath, _, files in os.walk(folder):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def bench_expand(store: Path, n: int) -> dict:
    """Click 'context' on a snippet -> its whole context painted in place, with the store's dense
    chunks, token ids and document starts dropped from the page cache before each click."""
    from neurobrowse.qt import smoke, windows

    windows.ensure_app(offscreen=True)
    win = windows.open_main_window(store, settings=smoke.scratch_settings())
    win.resize(1600, 1000)
    win.show()
    smoke.wait_for(lambda: win.browser.page is not None and win.page.top_view.complete, 120)
    b, sv = win.browser, win.page.top_view
    d = int(b.store.d_mlp)
    rng = np.random.default_rng(1)
    times = []
    for neuron in rng.choice(d, size=min(n, d), replace=False):
        neuron = int(neuron)
        b.select(neuron)
        smoke.wait_for(lambda: b.page is not None and b.page.ref.neuron == neuron and sv.complete
                     and sv.snippets is not None, 60)
        if len(sv.snippets) < 2:
            continue
        si = int(rng.integers(0, min(len(sv.snippets), 20)))
        before = sv.snippets[si]
        for sub in [h for h in b.store.hooks] + ["tokens", "doc_starts"]:
            _drop_page_cache(Path(store) / sub)
        t0 = time.perf_counter()
        sv.toggle_expand(si)
        smoke.wait_for(lambda: sv.snippets[si] is not before, 30)
        from PySide6.QtWidgets import QApplication

        sv.viewport().repaint()
        QApplication.processEvents()
        times.append((time.perf_counter() - t0) * 1e3)
    win.close()
    a = np.array(times)
    return {"store": str(store), "expansions": len(times), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max()), "cold_page_cache": True,
            "chunk_MB": float(b.store.chunk_tokens * d * 2 / 2**20)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="startup,switch")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "work")
    ap.add_argument("--store", type=Path, help="store for the startup part (default: a tiny store built into --work)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=10_000_000)
    ap.add_argument("--neurons", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--expand-store", type=Path, help="a real store (dense chunks) for the expand part")
    ap.add_argument("--expansions", type=int, default=40)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict = {"machine": f"{os.cpu_count()} cores, shared with other work while measured"}
    parts = args.parts.split(",")
    if "startup" in parts:
        store = args.store
        if store is None:
            from tests.builders import build_tiny_store

            store = build_tiny_store(args.work / "tiny", "solu_ln")
        out["startup"] = bench_startup(store, args.repeats)
        print(json.dumps({"startup": out["startup"]}, indent=1))
    if "switch" in parts:
        out["switch"] = bench_switch(args.work, args.tokens, args.neurons, args.vocab, args.presses)
        print(json.dumps({"switch": out["switch"]}, indent=1))
    if "expand" in parts:
        if args.expand_store is None:
            raise SystemExit("--parts expand needs --expand-store STORE (a recorded, indexed store)")
        out["expand"] = bench_expand(args.expand_store, args.expansions)
        print(json.dumps({"expand": out["expand"]}, indent=1))
    dest = ROOT / "benchmarks" / "out" / ("bench_app.json" if parts != ["expand"] else "bench_app_expand.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1))
    print(f"written {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
