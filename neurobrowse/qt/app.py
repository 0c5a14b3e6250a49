"""Starting the app: QApplication set-up, the browser and compare windows, headless screenshots and the
packaged app's ``--smoke-test``.

``neurobrowse open``/``compare``/``demo`` call into here; so does the ``neurobrowse-app`` GUI script
and the PyInstaller build (packaging/neurobrowse_app.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from store.errors import NeurobrowseError


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("win32", "darwin")


def ensure_app(offscreen: bool = False):
    """The QApplication (created once). ``offscreen`` renders without a display (screenshots, smoke tests)."""
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif not has_display() and not os.environ.get("QT_QPA_PLATFORM"):
        raise NeurobrowseError("no display found ($DISPLAY / $WAYLAND_DISPLAY unset): run it on a desktop, under "
                               "`xvfb-run`, or headless with `--offscreen --screenshot out.png`")
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName("neurobrowse")
        QCoreApplication.setApplicationName("neurobrowse")
        app = QApplication(sys.argv[:1])
        app.setStyle("Fusion")
        apply_color_scheme(app)
        app.styleHints().colorSchemeChanged.connect(lambda scheme: apply_color_scheme(app, scheme))
        icon = Path(__file__).resolve().parents[1] / "resources" / "neurobrowse.svg"
        if icon.exists():
            app.setWindowIcon(QIcon(str(icon)))
    return app


def apply_color_scheme(app, scheme=None) -> str:
    """Follow the desktop's light or dark scheme (``scheme`` None: the one Qt reports): a dark Fusion palette
    for a dark desktop. Snippets and plots keep their white paper either way, so the red / blue shading
    reads as in the paper; returns "dark" or "light"."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPalette

    scheme = app.styleHints().colorScheme() if scheme is None else scheme
    if scheme != Qt.ColorScheme.Dark:
        app.setPalette(app.style().standardPalette())
        return "light"
    p = QPalette()
    R = QPalette.ColorRole
    for role, rgb in ((R.Window, (45, 45, 48)), (R.WindowText, (225, 225, 225)), (R.Base, (30, 30, 32)),
                      (R.AlternateBase, (50, 50, 54)), (R.Text, (225, 225, 225)), (R.Button, (55, 55, 58)),
                      (R.ButtonText, (225, 225, 225)), (R.ToolTipBase, (60, 60, 64)), (R.ToolTipText, (235, 235, 235)),
                      (R.Highlight, (60, 110, 200)), (R.HighlightedText, (255, 255, 255)), (R.Link, (120, 170, 255)),
                      (R.PlaceholderText, (140, 140, 140)), (R.Mid, (110, 110, 110))):
        p.setColor(role, QColor(*rgb))
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 120))
    app.setPalette(p)
    return "dark"


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


def open_main_window(path, hook: str | None = None, neuron: int | None = None, settings=None):
    from neurobrowse.qt.main_window import MainWindow

    win = MainWindow(settings=settings)
    win.open_store(path, hook=hook, neuron=neuron)
    return win


def open_compare_window(path_a, path_b, settings=None, neuron: int | None = None):
    from neurobrowse.qt.compare_window import CompareWindow

    win = CompareWindow(settings=settings)
    win.open_stores(path_a, path_b)
    return win


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


def run_windows(*windows) -> int:
    from PySide6.QtWidgets import QApplication

    for w in windows:
        w.show()
    return QApplication.instance().exec()


def rate_study(session) -> None:
    """Rate a blinded study in the StudyWindow until the rater closes it (`neurobrowse study rate`)."""
    from neurobrowse.qt.study_window import StudyWindow

    ensure_app()
    run_windows(StudyWindow(session))


def main(argv: list[str] | None = None) -> int:
    """The ``neurobrowse-app`` GUI entry point (and the packaged app): ``[STORE [STORE_B]] [--smoke-test]``."""
    p = argparse.ArgumentParser(prog="neurobrowse-app", description="The neurobrowse desktop app.")
    p.add_argument("stores", nargs="*", help="a store to open, or two to compare")
    p.add_argument("--smoke-test", action="store_true", help="start headless, open STORE, exit 0 when a page shows")
    p.add_argument("--offscreen", action="store_true", help="render without a display")
    p.add_argument("--screenshot", metavar="PNG", help="render the window to PNG and exit")
    args = p.parse_args(argv)
    try:
        if args.smoke_test:
            if not args.stores:
                print("error: --smoke-test needs a STORE", file=sys.stderr)
                return 2
            return smoke_test(args.stores[0])
        if args.screenshot:
            if len(args.stores) == 2:
                out = screenshot_compare(args.stores[0], args.stores[1], args.screenshot)
            elif args.stores:
                out = screenshot_main(args.stores[0], args.screenshot)
            else:
                print("error: --screenshot needs a STORE", file=sys.stderr)
                return 2
            print(f"screenshot written to {out}")
            return 0
        ensure_app(offscreen=args.offscreen)
        if len(args.stores) == 2:
            return run_windows(open_compare_window(*args.stores))
        from neurobrowse.qt.main_window import MainWindow
        from neurobrowse.qt.settings import recent_stores

        win = MainWindow()
        target = args.stores[0] if args.stores else (recent_stores(win.settings)[:1] or [None])[0]
        if target:
            win.open_store(target)
        return run_windows(win)
    except NeurobrowseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
