"""Screenshots of the reading views (docs/): a neuron page with code snippets, the bottom-k tab, the
quantile tab, the histogram and the study window, rendered at 1600x1000.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/screenshots_reading.py STORE [--neuron N] \
        [--other STORE_B | --study STUDY_DIR] [--out docs]

The neuron shown by default is the one whose distinct top snippets hold the most newline tokens
(code). Each PNG must be looked at before it is committed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def code_neuron(store, hook: str, tries: int = 200) -> int:
    """The neuron (among the first ``tries``) whose top snippets hold the most newlines and indentation."""
    best, best_n = -1.0, 0
    for n in range(min(tries, store.d_mlp)):
        v = store.neuron(hook, n)
        text = "".join("".join(s.tokens) for s in v.top[:12])
        score = text.count("\u23ce") + 0.2 * text.count("    ") + 5 * min(len(v.top), 20) / 20
        if score > best:
            best, best_n = score, n
    return best_n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--neuron", type=int, default=None)
    ap.add_argument("--study", default=None, help="a study folder (default: one drawn from STORE and --other)")
    ap.add_argument("--other", default=None, help="a second store for the study drawn by default (another model)")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args(argv)

    from neurobrowse.qt.smoke import save_png, scratch_settings, wait_for
    from neurobrowse.qt.windows import ensure_app, open_main_window
    from store.format.reader import Store

    ensure_app()
    out = Path(args.out)
    st = Store.open(args.store)
    hook = st.hooks[0]
    neuron = args.neuron if args.neuron is not None else code_neuron(st, hook)
    print(f"neuron {neuron} of {hook}")
    win = open_main_window(args.store, hook=hook, neuron=neuron, settings=scratch_settings())
    win.resize(1600, 1000)
    win.show()
    assert wait_for(lambda: win.browser.page is not None and win.page.top_view.complete, 120)
    page = win.page
    page.info_tabs.setCurrentIndex(0)
    save_png(win, out / "reading-neuron-page.png")
    page.tabs.setCurrentIndex(1)
    wait_for(lambda: page.bottom_view.complete, 30)
    save_png(win, out / "reading-bottom-tab.png")
    page.tabs.setCurrentIndex(2)
    wait_for(lambda: page.samples_view.complete, 30)
    save_png(win, out / "reading-quantile-tab.png")
    page.tabs.setCurrentIndex(0)
    # expand the second snippet to its whole context (read in a worker)
    sv = page.top_view
    before = sv.snippets[1] if len(sv.snippets) > 1 else None
    if before is not None:
        sv.toggle_expand(1)
        wait_for(lambda: sv.snippets[1] is not before, 30)
        save_png(win, out / "reading-expanded.png")
    save_png(page.hist.parentWidget(), out / "reading-histogram.png")
    win.close()

    from neurobrowse.qt.study_window import StudyWindow
    from neurobrowse.study.draw import StudyConfig, new_study
    from neurobrowse.study.session import StudySession

    study = Path(args.study) if args.study else Path(tempfile.mkdtemp()) / "study"
    if not (study / "study.json").exists():
        if not args.other:
            raise SystemExit("drawing a study needs two stores: pass --other STORE (or --study FOLDER)")
        new_study([st, Store.open(args.other)], study, StudyConfig(per_model=3, seed=1))
    sw = StudyWindow(StudySession(study, "screenshot"))
    sw.resize(1100, 1000)
    sw.show()
    wait_for(lambda: sw.view.complete, 30)
    save_png(sw, out / "reading-study-window.png")
    sw.close()
    print("wrote", ", ".join(sorted(p.name for p in out.glob("reading-*.png"))))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
