"""The QApplication and the top-level windows: ``ensure_app`` (created once, Fusion style, the desktop's
light or dark scheme), the browser, compare and study windows, and the event loop.

The app's start (neurobrowse.qt.app), ``neurobrowse open``/``compare``/``demo``/``study rate`` and the
headless renders (neurobrowse.qt.smoke) open their windows through here.
"""

from __future__ import annotations

import os
import sys
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
