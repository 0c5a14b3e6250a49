"""Screenshots of the app as a person sees it, on a real X server (Xvfb) of a given screen size: the main
window, the compare window (its Evidence and Populations tabs) and the study window, each sized as a first
start sizes it on that screen (docs/app-*-WxH.png).

    xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/screenshots_app.py GELU_STORE SOLU_STORE --out docs
    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/screenshots_app.py GELU_STORE SOLU_STORE --out docs

Each PNG must be looked at before it is committed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gelu")
    ap.add_argument("solu")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--neuron", type=int, default=None)
    args = ap.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from neurobrowse.qt.smoke import pick_showcase_neuron, wait_compare_ready, wait_for
    from neurobrowse.qt.windows import ensure_app
    from neurobrowse.qt.compare_window import CompareWindow
    from neurobrowse.qt.main_window import MainWindow

    app = ensure_app()
    screen = app.primaryScreen().size()
    tag = f"{screen.width()}x{screen.height()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp()
    settings = QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat)

    def shot(widget, name: str) -> None:
        for _ in range(5):
            app.processEvents()
        path = out / f"app-{name}-{tag}.png"
        widget.grab().save(str(path))
        print(f"{path}: window {widget.width()} x {widget.height()} (minimum {widget.minimumSizeHint().width()} x "
              f"{widget.minimumSizeHint().height()})")

    w = MainWindow(settings=settings)
    w.show()
    w.open_store(args.solu)
    wait_for(lambda: w.browser.page is not None, 120)
    n = args.neuron if args.neuron is not None else pick_showcase_neuron(w.browser)
    w.browser.select(n)
    wait_for(lambda: w.browser.page is not None and w.browser.page.ref.neuron == n and w.page.top_view.complete, 60)
    wait_for(lambda: w.page.label_panel is not None, 30)
    shot(w, "main")
    w.close()

    c = CompareWindow(settings=settings)
    c.show()
    c.open_stores(args.gelu, args.solu)
    wait_compare_ready(c)
    c.pick(1, "", n)
    wait_for(lambda: c.browsers[1].page is not None and c.browsers[1].page.ref.neuron == n, 60)
    shot(c, "compare")
    c.panel.details_button.click()
    shot(c, "compare-details")
    c.panel.details_button.click()
    c.panel.views.setCurrentIndex(1)
    c.split.setSizes([c.height() * 2 // 3, c.height() // 3])
    shot(c, "compare-populations")
    c.close()

    from neurobrowse.qt.study_window import StudyWindow
    from neurobrowse.study.draw import StudyConfig, new_study
    from neurobrowse.study.session import StudySession

    study = new_study([args.gelu, args.solu], Path(tmp) / "study", StudyConfig(per_model=3, seed=1))
    s = StudyWindow(StudySession(study, "screenshot"))
    s.resize(min(1000, screen.width()), min(900, screen.height() - 40))
    s.show()
    wait_for(lambda: s.view.complete, 30)
    shot(s, "study")
    s.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
