"""`neurobrowse compare STORE_A STORE_B`: GeLU vs SoLU-LN side by side.

Top: the verdict on the paper's result with its evidence (neurobrowse.verdict: a reported blinded
study leads, automated scores are proxies, each with shares, 95% intervals, effect size and p-value,
and a line on what "holds" means), the share of neurons passing each automated score with 95%
Wilson intervals, and population plots (the scores, max activation, density, kurtosis) of both
models overlaid, plus a token-rule vs rule-explanation scatter whose points open that neuron. Bottom: one
tab per model with the same neuron table and neuron page as the main window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from shiboken6 import isValid
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from neurobrowse.compare import Comparison
from neurobrowse.qt.bridge import ComparisonBridge
from neurobrowse.qt.browser_pane import BrowserPane
from neurobrowse.qt.dialogs import close_boxes, show_error
from neurobrowse.qt.settings import app_settings
from store.measures import columns
from store.measures.scores import model_name

COLORS = ((40, 90, 200), (210, 40, 40))  # side A blue, side B red
# (column, plot title, transform): every score, then the shape of the activation distribution
POP_PLOTS = [*((s, columns.BY_NAME[s].title, None) for s in columns.SCORES),
             ("max_act", "max activation", None), ("density", "density (share > 0)", None),
             ("kurtosis", "log10(3 + excess kurtosis)", "logkurt"),
             ("ln_overlap", "top firings kept across the LayerNorm (SoLU-LN)", None)]


def _transform(values: np.ndarray, how: str | None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if how == "logkurt":
        v = np.log10(np.maximum(v + 3.0, 1e-3))
    return v


class ComparisonPanel(QWidget):
    """Verdict, pass shares with intervals, population plots. Items created once, filled by setData."""

    neuronPicked = Signal(int, str, int)  # side (0/1), hook, neuron

    def __init__(self, cmp_model: ComparisonBridge, parent=None) -> None:
        super().__init__(parent)
        self.verdict = QLabel("Comparing… (reading both neuron tables)")
        self.verdict.setWordWrap(True)
        f = self.verdict.font()
        f.setPointSizeF(f.pointSizeF() * 1.2)
        self.verdict.setFont(f)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.shares_label = QLabel("")
        self.shares_label.setTextFormat(Qt.TextFormat.RichText)
        # the evidence behind the verdict, line by line, and what "holds" means
        self.evidence = QLabel("")
        self.evidence.setWordWrap(True)
        self.evidence.setTextFormat(Qt.TextFormat.RichText)
        self.evidence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        grid = QGridLayout()
        grid.setSpacing(4)
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, list] = {}
        for i, (key, title, _) in enumerate(POP_PLOTS):
            pw = pg.PlotWidget()
            pw.setMenuEnabled(False)
            pw.setMinimumHeight(140)
            pi = pw.getPlotItem()
            pi.setTitle(title, size="9pt")
            pi.showGrid(x=True, y=True, alpha=0.15)
            pi.setLabel("left", "share of neurons")
            legend = pi.addLegend(offset=(-5, 5), labelTextSize="8pt") if i == 0 else None
            curves = []
            for side, c in enumerate(COLORS):
                curves.append(pw.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(*c, 50),
                                      pen=pg.mkPen(c, width=1.6), name=f"side {side}"))
            self.legend = legend if legend is not None else getattr(self, "legend", None)
            self.plots[key], self.curves[key] = pw, curves
            grid.addWidget(pw, i // 3, i % 3)
        n_pop = len(POP_PLOTS)

        # the share of neurons passing each score, with 95% Wilson intervals
        self.share_plot = pg.PlotWidget()
        self.share_plot.setMenuEnabled(False)
        sp = self.share_plot.getPlotItem()
        sp.setTitle("share passing each automated score (95% CI)", size="9pt")
        sp.setYRange(0, 1)
        sp.showGrid(y=True, alpha=0.15)
        self.share_bars = [pg.BarGraphItem(x=[0], height=[0], width=0.35, brush=(*c, 160)) for c in COLORS]
        self.share_err = [pg.ErrorBarItem(x=np.zeros(1), y=np.zeros(1), top=np.zeros(1), bottom=np.zeros(1),
                                          beam=0.1, pen=pg.mkPen((30, 30, 30), width=1.2)) for _ in COLORS]
        for item in self.share_bars + self.share_err:
            sp.addItem(item)
        grid.addWidget(self.share_plot, n_pop // 3, n_pop % 3)

        # token-rule vs rule explanation score: click a point to open that neuron on its side
        self.scatter_plot = pg.PlotWidget()
        self.scatter_plot.setMenuEnabled(False)
        scp = self.scatter_plot.getPlotItem()
        scp.setTitle("token-rule vs rule explanation score (click a neuron)", size="9pt")
        scp.setLabel("bottom", "token-rule")
        scp.setLabel("left", "rule explanation")
        self.scatters = []
        for side, c in enumerate(COLORS):
            sc = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(*c, 110), hoverable=True,
                                    hoverBrush=pg.mkBrush(0, 0, 0), tip=None)
            sc.sigClicked.connect(lambda item, points, ev, side=side: self._picked(side, points))
            scp.addItem(sc)
            self.scatters.append(sc)
        grid.addWidget(self.scatter_plot, 0, 3, n_pop // 3 + 1, 1)
        for c in range(4):
            grid.setColumnStretch(c, 1)
        for pw in [*self.plots.values(), self.share_plot, self.scatter_plot]:
            for ax in ("left", "bottom"):
                pw.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(self.verdict)
        left.addWidget(self.evidence)
        top.addLayout(left, 3)
        top.addWidget(self.shares_label, 2)
        lay.addLayout(top)
        lay.addLayout(grid, 1)
        self._hooks: list[np.ndarray] = [np.zeros(0, dtype=object)] * 2
        cmp_model.ready.connect(self.show_comparison)

    def show_comparison(self, cmp: Comparison) -> None:
        self.verdict.setText(cmp.verdict)
        ev = cmp.evidence
        if ev is not None:
            import html

            self.verdict.setToolTip(ev.help)
            self.evidence.setToolTip(ev.help)
            items = "".join(f"<li>{html.escape(line)}</li>" for line in ev.lines)
            self.evidence.setText(f"<ul style='margin: 0'>{items}</ul><i>What “holds” means:</i> "
                                  f"{html.escape(ev.help)}")
        else:
            self.evidence.setText("")
        for key, _, how in POP_PLOTS:
            vals = [_transform(t.get(key, np.zeros(0)), how) for t in cmp.tables]
            allv = np.concatenate(vals) if any(len(v) for v in vals) else np.zeros(1)
            lo, hi = (float(np.min(allv)), float(np.max(allv))) if len(allv) else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1.0
            edges = np.linspace(lo, hi, 41)
            for side, v in enumerate(vals):
                counts, _ = np.histogram(v, bins=edges)
                share = counts / max(len(v), 1)
                self.curves[key][side].setData(edges, share)
                self.curves[key][side].opts["name"] = cmp.labels[side]
            self.plots[key].getPlotItem().enableAutoRange()
        if self.legend is not None:
            self.legend.clear()
            for side in (0, 1):
                self.legend.addItem(self.curves[POP_PLOTS[0][0]][side], cmp.labels[side])
        # share bars
        names = [r.name for r in cmp.shares[0]]
        x = np.arange(len(names), dtype=np.float64)
        for side in (0, 1):
            res = cmp.shares[side]
            shares = np.array([r.share for r in res])
            lo = np.array([r.interval[0] for r in res])
            hi = np.array([r.interval[1] for r in res])
            xs = x + (side - 0.5) * 0.38
            self.share_bars[side].setOpts(x=xs, height=shares, width=0.35)
            self.share_err[side].setData(x=xs, y=shares, top=hi - shares, bottom=shares - lo)
        ax = self.share_plot.getPlotItem().getAxis("bottom")
        ax.setTicks([[(float(i), n.replace("_score", "")) for i, n in enumerate(names)]])
        self.share_plot.getPlotItem().setXRange(-0.7, len(names) - 0.3)
        rows = []
        for i, n in enumerate(names):
            cells = []
            for side in (0, 1):
                r = cmp.shares[side][i]
                lo, hi = r.interval
                cells.append(f"<td style='color: rgb{COLORS[side]}'>&nbsp;{r.k}/{r.n} = {r.share:.0%} "
                             f"[{lo:.0%}, {hi:.0%}]&nbsp;</td>")
            rows.append(f"<tr><td>{n} ≥ {cmp.shares[0][i].threshold:g}</td>{''.join(cells)}</tr>")
        head = "".join(f"<th style='color: rgb{COLORS[s]}'>{cmp.labels[s]}</th>" for s in (0, 1))
        self.shares_label.setText(f"<table cellspacing=2><tr><th>passes</th>{head}</tr>{''.join(rows)}</table>")
        # scatter
        for side in (0, 1):
            t = cmp.tables[side]
            xs = np.asarray(t.get("token_rule_score", np.zeros(0)), dtype=np.float64)
            ys = np.asarray(t.get("explain_score", np.zeros(0)), dtype=np.float64)
            neurons = np.asarray(t.get("neuron", np.zeros(0)), dtype=np.int64)
            hooks = np.asarray(t.get("hook", np.array([""] * len(neurons), dtype=object)), dtype=object)
            ok = np.flatnonzero(np.isfinite(xs) & np.isfinite(ys))
            data = np.empty(len(ok), dtype=object)
            data[:] = [(str(hooks[i]), int(neurons[i])) for i in ok]
            self.scatters[side].setData(x=xs[ok], y=ys[ok], data=data)

    def _picked(self, side: int, points) -> None:
        if len(points):
            hook, neuron = points[0].data()
            self.neuronPicked.emit(side, hook, neuron)


class CompareWindow(QMainWindow):
    closed = Signal()

    def __init__(self, settings: QSettings | None = None, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings or app_settings()
        self.setWindowTitle("neurobrowse — compare")
        self.cmp_model = ComparisonBridge(self)
        self.panel = ComparisonPanel(self.cmp_model)
        self.browsers = list(self.cmp_model.sides)
        self.sides = [BrowserPane(b, sizes=(520, 1180)) for b in self.browsers]
        self.tabs = QTabWidget()
        for i, side in enumerate(self.sides):
            self.tabs.addTab(side, f"{'AB'[i]}")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.panel)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.split = split
        self.setCentralWidget(split)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.error_boxes: list[QMessageBox] = []
        self.paths: list[Path] = []

        self.cmp_model.errorRaised.connect(self.show_error)
        self.panel.neuronPicked.connect(self.pick)
        for i, b in enumerate(self.browsers):
            b.errorRaised.connect(self.show_error)
            b.storeOpened.connect(lambda store, i=i: self._on_store(i, store))
            b.statusChanged.connect(lambda s, i=i: self._on_status(i, s))
        self._status = ["", ""]
        self._build_menus()
        geo = self.settings.value("compare/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1700, 1100)
        s = self.settings.value("compare/split")
        if s is not None:
            split.restoreState(s)

    def _build_menus(self) -> None:
        def act(text, slot, keys):
            a = QAction(text, self)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        cur = lambda: self.browsers[self.tabs.currentIndex()]  # noqa: E731
        f = self.menuBar().addMenu("&File")
        f.addAction(act("&Close", self.close, ["Ctrl+W"]))
        f.addAction(act("&Quit", self.close, ["Ctrl+Q"]))
        g = self.menuBar().addMenu("&Go")
        g.addAction(act("&Next neuron", lambda: cur().step_neuron(1), ["J", "Ctrl+Down"]))
        g.addAction(act("&Previous neuron", lambda: cur().step_neuron(-1), ["K", "Ctrl+Up"]))
        g.addAction(act("Next &layer", lambda: cur().step_layer(1), ["]"]))
        g.addAction(act("Previous l&ayer", lambda: cur().step_layer(-1), ["["]))
        g.addAction(act("Before / after &LayerNorm", lambda: cur().toggle_ln_side(), ["M"]))
        g.addAction(act("Same neuron on the &other model", self.same_on_other, ["O"]))
        g.addAction(act("&Back", lambda: cur().back(), ["Alt+Left"]))
        g.addAction(act("&Forward", lambda: cur().forward(), ["Alt+Right"]))

    def open_stores(self, path_a, path_b) -> None:
        self.paths = [Path(path_a), Path(path_b)]
        self.cmp_model.open_stores(path_a, path_b)

    def _on_store(self, i: int, store) -> None:
        label = f"{'AB'[i]}: {model_name(store)} · {Path(store.path).name}"
        self.tabs.setTabText(i, label)
        names = [model_name(b.store) if b.store is not None else "?" for b in self.browsers]
        self.setWindowTitle(f"neurobrowse — compare {names[0]} vs {names[1]}")

    def _on_status(self, i: int, s: str) -> None:
        self._status[i] = s
        self.status_label.setText("   |   ".join(f"{'AB'[j]}: {t}" for j, t in enumerate(self._status) if t))

    def pick(self, side: int, hook: str, neuron: int) -> None:
        """Show a neuron on one side (from the scatter or programmatically)."""
        self.tabs.setCurrentIndex(side)
        b = self.browsers[side]
        if hook:
            b.select(neuron, hook=hook)
        else:
            b.select(neuron)

    def same_on_other(self) -> None:
        """O: the shown neuron's number on the other model, same hook."""
        i = self.tabs.currentIndex()
        self.tabs.setCurrentIndex(1 - i)
        self.cmp_model.same_on_other(i)

    def show_error(self, title: str, message: str) -> QMessageBox:
        box = show_error(self, title, message)
        self.error_boxes = [b for b in self.error_boxes if isValid(b) and b.isVisible()] + [box]
        return box

    def closeEvent(self, event) -> None:
        self.settings.setValue("compare/geometry", self.saveGeometry())
        self.settings.setValue("compare/split", self.split.saveState())
        self.settings.sync()
        self.cmp_model.shutdown()
        close_boxes(self.error_boxes)
        super().closeEvent(event)
        self.closed.emit()
