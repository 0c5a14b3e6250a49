"""Headless runs of the app: screenshots of the browser and compare windows (``--offscreen --screenshot``,
the demo's picture) and the packaged app's ``--smoke-test``, with scratch settings (never the user's own)
and the event-loop wait they share.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from neurobrowse.qt.windows import ensure_app, open_compare_window, open_main_window
from store.errors import NeurobrowseError


def scratch_settings():
    """Settings for headless renders (screenshots, smoke tests): a temp INI, never the user's own."""
    import tempfile

    from PySide6.QtCore import QSettings

    return QSettings(os.path.join(tempfile.gettempdir(), "neurobrowse-headless.ini"), QSettings.Format.IniFormat)


def wait_for(predicate, timeout_s: float = 60.0) -> bool:
    """Run the event loop until ``predicate()`` holds (workers deliver through it) or time runs out."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(10)
    deadline = time.monotonic() + timeout_s
    timer.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() >= deadline else None)
    timer.start()
    try:
        while not predicate() and time.monotonic() < deadline:
            loop.exec()
    finally:
        timer.stop()
    return bool(predicate())


def _first_error(win) -> str | None:
    from shiboken6 import isValid

    boxes = [b for b in getattr(win, "error_boxes", []) if isValid(b) and b.isVisible()]
    if boxes:
        return f"{boxes[0].text()}: {boxes[0].informativeText()}".replace("<b>", "").replace("</b>", "")
    return None


def save_png(widget, path: str | Path) -> Path:
    """Render a widget (and its children, plots included) into a PNG."""
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path)):
        raise NeurobrowseError(f"could not write the screenshot {path}; check that the folder is writable")
    return path


def wait_compare_ready(win, timeout_s: float = 120.0) -> bool:
    return wait_for(lambda: win.cmp_model.comparison is not None and all(b.page is not None for b in win.browsers)
                    or _first_error(win) is not None, timeout_s)


def pick_showcase_neuron(browser) -> int:
    """A neuron worth showing in a screenshot: the best token-rule score among neurons with a clear max."""
    import numpy as np

    t = browser.table()
    if t is None:
        return 0
    score = np.nan_to_num(np.asarray(t["token_rule_score"], dtype=np.float64), nan=-1.0)
    score = score + 0.5 * np.nan_to_num(np.asarray(t["sim_score"], dtype=np.float64), nan=0.0)
    return int(t["neuron"][int(np.argmax(score))])


def _showcase_live(page_widget, timeout_s: float = 60.0) -> None:
    """Put the strongest snippet in the try-your-text editor and wait for the model's shading (when a
    checkpoint and torch are at hand; otherwise the editor's status line says why)."""
    top = page_widget.top_view
    if not top.snippets:
        return
    live = page_widget.live
    live.set_text(top.plain_text_of(0))
    wait_for(lambda: live.result is not None or live.status.text().startswith(("model unavailable", "no checkpoint",
                                                                               "try-your-text needs")), timeout_s)


def screenshot_compare(path_a, path_b, out: str | Path, size=(1800, 1250), settings=None) -> Path:
    """Headless: the compare window with both models, a neuron page with shaded snippets, into one PNG."""
    ensure_app(offscreen=True)
    settings = settings or scratch_settings()
    win = open_compare_window(path_a, path_b, settings=settings)
    try:
        win.resize(*size)
        win.show()
        if not wait_compare_ready(win):
            raise NeurobrowseError("the compare window did not finish loading within 120 s")
        err = _first_error(win)
        if err:
            raise NeurobrowseError(f"the compare window reported an error: {err}")
        # show the SoLU side's most interpretable-looking neuron (the paper's claim is about SoLU)
        side = next((i for i, b in enumerate(win.browsers) if "solu" in str(b.store.model_config.get("act_fn"))), 1)
        b = win.browsers[side]
        neuron = pick_showcase_neuron(b)
        win.pick(side, "", neuron)
        wait_for(lambda: b.page is not None and b.page.ref.neuron == neuron, 60)
        _showcase_live(win.sides[side].page)
        return _finish_screenshot(win, out)
    finally:
        win.close()
        win.deleteLater()


def _finish_screenshot(win, out) -> Path:
    """Close any error boxes (a model error shows in the editor's status line too) and save the PNG."""
    for box in list(win.error_boxes):
        box.close()
    return save_png(win, out)


def screenshot_main(path, out: str | Path, size=(1600, 950), neuron: int | None = None, settings=None) -> Path:
    ensure_app(offscreen=True)
    win = open_main_window(path, neuron=neuron, settings=settings or scratch_settings())
    try:
        win.resize(*size)
        win.show()
        wait_for(lambda: win.browser.page is not None or _first_error(win) is not None, 120)
        err = _first_error(win)
        if err:
            raise NeurobrowseError(f"the window reported an error: {err}")
        if neuron is None:
            n = pick_showcase_neuron(win.browser)
            win.browser.select(n)
            wait_for(lambda: win.browser.page is not None and win.browser.page.ref.neuron == n, 60)
        _showcase_live(win.page)
        return _finish_screenshot(win, out)
    finally:
        win.close()
        win.deleteLater()


def smoke_test(path) -> int:
    """Start headless, open the store, wait for a painted neuron page, exit 0 (2 with a message otherwise)."""
    t0 = time.perf_counter()
    app = ensure_app(offscreen=True)
    win = open_main_window(path, settings=scratch_settings())
    try:
        win.show()
        ok = wait_for(lambda: win.browser.page is not None or _first_error(win) is not None, 60)
        err = _first_error(win)
        if err or not ok:
            print(f"smoke test FAILED: {err or 'no neuron page within 60 s'}", file=sys.stderr)
            return 2
        win.grab()  # paints every widget once
        page = win.browser.page
        print(f"smoke test ok: {path} opened, {page.ref.label()} shown with {len(page.top)} top snippets "
              f"in {time.perf_counter() - t0:.2f} s")
        return 0
    finally:
        win.close()
        win.deleteLater()
        app.processEvents()
