"""`neurobrowse compare STORE_A STORE_B`: GeLU vs SoLU-LN side by side.

Top: one sentence on what the evidence says (neurobrowse.verdict: a reported blinded study leads, the
automated scores are proxies; when they point different ways the sentence says so), then a forest plot of
SoLU-LN minus GeLU with 95% intervals (the study first, then each proxy, then the random-model control when
there is one), the details folded (every evidence line, the pass shares with Wilson intervals). A second
tab holds the population plots (every score, max activation, density, kurtosis, the LayerNorm overlap) of
both models overlaid, the pass-share bars and a token-rule vs rule-explanation scatter whose points open
that neuron. Bottom: one tab per model with the same neuron table and neuron page as the main window.
Each metric is named by its ``store.measures.columns`` title everywhere.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from shiboken6 import isValid
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QGridLayout, QLabel, QMainWindow, QMessageBox, QScrollArea,
                               QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from neurobrowse.compare import Comparison
from neurobrowse.qt.bridge import ComparisonBridge
from neurobrowse.qt.browser_pane import BrowserPane
from neurobrowse.qt.dialogs import close_boxes, show_error
from neurobrowse.qt.settings import app_settings, fit_screen
from store.measures import columns
from store.measures.scores import model_name

COLORS = ((40, 90, 200), (210, 40, 40))  # side A blue, side B red
WORD_COLORS = {"holds": (20, 130, 60), "does not hold": (190, 40, 40)}  # others grey


def metric_title(name: str) -> str:
    """The one name of a metric, as store.columns titles it (the comparison's evidence uses the same)."""
    col = columns.BY_NAME.get(name)
    return col.title if col is not None else name


# (column, plot title, transform): every score, then the shape of the activation distribution
POP_PLOTS = [*((s, metric_title(s), None) for s in columns.SCORES),
             ("max_act", metric_title("max_act"), None), ("density", metric_title("density"), None),
             ("kurtosis", "log10(3 + excess kurtosis)", "logkurt"),
             ("ln_overlap", "top firings kept across the LayerNorm (SoLU-LN)", None)]


def _transform(values: np.ndarray, how: str | None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if how == "logkurt":
        v = np.log10(np.maximum(v + 3.0, 1e-3))
    return v


# ---- the evidence as rows of a forest plot (Qt-free) ------------------------------------------------------


@dataclass(frozen=True)
class ForestRow:
    """One evidence item: SoLU-LN minus GeLU (a difference of shares, in [-1, 1]) with its 95% interval."""

    name: str  # e.g. "blinded study", "rule explanation score >= 0.7"
    kind: str  # "study" | "proxy" | "control"
    diff: float
    lo: float
    hi: float
    word: str  # the verdict word: holds / does not hold / undecided (or same way, not significant) / does not decide
    p: float = math.nan
    decides: bool = True  # False: shown, does not decide (a score that passes nearly every neuron, a control)


def _get(obj, *names, default=None):
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def forest_rows(evidence) -> list[ForestRow]:
    """Rows in the order the plot draws them: the study first, then each proxy, then the random control.

    ``evidence`` is the comparison's verdict. Its evidence list (``items``: per item a name, a kind, the
    difference with its 95% interval ``lo``/``hi`` and a verdict word) is read as it is; an older
    ``neurobrowse.verdict.Verdict`` (``study`` + ``evidence`` of score comparisons) is turned into rows."""
    if evidence is None:
        return []
    listed = _get(evidence, "items", "evidence_list")
    if listed:
        rows = []
        for it in listed:
            iv = _get(it, "interval", "diff_interval", default=None) or (_get(it, "lo", default=math.nan),
                                                                          _get(it, "hi", default=math.nan))
            kind = str(_get(it, "kind", default="proxy"))
            rows.append(ForestRow(str(_get(it, "name", "title", default="?")), kind,
                                  float(_get(it, "diff", "difference", default=math.nan)), float(iv[0]), float(iv[1]),
                                  str(_get(it, "word", "verdict", "outcome", default="")),
                                  float(_get(it, "p", "p_fisher", default=math.nan)),
                                  bool(_get(it, "decides", default=kind != "control"))))
        order = {"study": 0, "proxy": 1, "control": 2}
        return sorted(rows, key=lambda r: order.get(r.kind, 1))  # stable: each kind keeps its order
    rows = []
    st = getattr(evidence, "study", None)
    if st is not None and sum(st.n) > 0:
        lo, hi = st.diff_interval
        rows.append(ForestRow(f"blinded study ({st.raters} rater{'s' if st.raters != 1 else ''})", "study",
                              st.diff, lo, hi, st.outcome, st.p_fisher))
    for e in getattr(evidence, "evidence", []) or []:
        lo, hi = e.diff_interval
        word = e.outcome if e.discriminates else "does not decide"
        kind = "control" if "control" in e.name or "random" in e.name else "proxy"
        rows.append(ForestRow(f"{metric_title(e.name)} ≥ {e.threshold:g}", kind, e.diff, lo, hi, word, e.p_fisher,
                              bool(e.discriminates)))
    order = {"study": 0, "proxy": 1, "control": 2}
    return sorted(rows, key=lambda r: order.get(r.kind, 1))


def _two_lines(title: str) -> str:
    """A long name on two lines at the space nearest its middle (tick labels that sit side by side)."""
    words = title.split()
    if len(words) < 2:
        return title
    cut = min(range(1, len(words)), key=lambda i: abs(len(" ".join(words[:i])) - len(title) / 2))
    return " ".join(words[:cut]) + "\n" + " ".join(words[cut:])


def _pts(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.0f}"


def _p_text(p: float) -> str:
    return "" if not math.isfinite(p) else (f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001")


def one_sentence(rows: list[ForestRow], names: tuple[str, str] = ("SoLU-LN", "GeLU")) -> str:
    """What the evidence says, in one sentence: the leading item (the study, else the first proxy that
    decides) with its difference and interval, and whether the automated proxies agree with it or not."""
    s, g = names
    study = next((r for r in rows if r.kind == "study"), None)
    deciding = [r for r in rows if r.kind == "proxy" and r.decides and math.isfinite(r.diff)]
    lead = study or (deciding[0] if deciding else None)
    if lead is None:
        return (f"Undecided: no blinded study of these stores yet and no automated score tells {s} from {g}; "
                "run `neurobrowse study new` to decide.")
    says = {"holds": "the paper's result holds", "same way, not significant":
            "it points the paper's way but is not significant",
            "does not hold": "the paper's result does not hold",
            "undecided": "undecided (the interval includes zero)"}.get(lead.word, lead.word)
    p = _p_text(lead.p)
    calibrated = lead.name.startswith("Calibrated")
    proxy = lead.name[:1].lower() + lead.name[1:] if calibrated else f"automated proxy {lead.name}"
    head = ("Blinded study" if lead is study else f"No blinded study yet; {proxy}")
    head += (f": {s} minus {g} {_pts(lead.diff)} points [{_pts(lead.lo)}, {_pts(lead.hi)}]"
             f"{', ' + p if p else ''} — {says}")
    others = [r for r in deciding if r is not lead]
    signs = {r.diff > 0 for r in [lead, *others] if r.diff != 0}
    if not others:
        tail = "; no automated proxy decides" if lead is study else ""
    elif len(signs) > 1:
        tail = "; the automated proxies disagree (" + ", ".join(f"{r.name} {_pts(r.diff)}" for r in others) + ")"
    else:
        tail = f"; the {'other ' if lead is not study else ''}automated proxies point the same way"
    return head + tail + "."


class ForestPlot(pg.PlotWidget):
    """SoLU-LN minus GeLU per evidence item, in percentage points, with 95% intervals; the first row on top.
    Items created once per row count and updated with setData."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        pi = self.getPlotItem()
        pi.setLabel("bottom", "SoLU-LN minus GeLU (percentage points; 95% interval)")
        pi.showGrid(x=True, alpha=0.15)
        pi.getAxis("bottom").enableAutoSIPrefix(False)
        pi.getAxis("left").setStyle(tickLength=0, textFillLimits=[(0, 1.0)], autoExpandTextSpace=False,
                                    autoReduceTextSpace=False)
        self.zero = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle.DashLine))
        pi.addItem(self.zero)
        self.bars = pg.ErrorBarItem(x=np.zeros(1), y=np.zeros(1), left=np.zeros(1), right=np.zeros(1), beam=0.15,
                                    pen=pg.mkPen((40, 40, 40), width=1.6))
        pi.addItem(self.bars)
        self.points = pg.ScatterPlotItem(size=10, pen=pg.mkPen((30, 30, 30)))
        pi.addItem(self.points)
        self.rows: list[ForestRow] = []
        self._rows_height = 160
        self.setMinimumHeight(90)  # a short window squeezes the rows; the sizeHint shows each one roomily

    def sizeHint(self):
        from PySide6.QtCore import QSize

        return QSize(600, self._rows_height)

    def set_rows(self, rows: list[ForestRow]) -> None:
        self.rows = list(rows)
        n = len(rows)
        y = np.arange(n, dtype=np.float64)[::-1]  # the first row on top
        d = np.array([100 * r.diff for r in rows], dtype=np.float64)
        lo = np.array([100 * r.lo for r in rows], dtype=np.float64)
        hi = np.array([100 * r.hi for r in rows], dtype=np.float64)
        ok = np.isfinite(d) & np.isfinite(lo) & np.isfinite(hi)
        self.bars.setData(x=d[ok], y=y[ok], left=(d - lo)[ok], right=(hi - d)[ok])
        brushes = [pg.mkBrush(*WORD_COLORS.get(r.word, (150, 150, 150))) for r, k in zip(rows, ok) if k]
        symbols = ["s" if r.kind == "study" else "d" if r.kind == "control" else "o" for r, k in zip(rows, ok) if k]
        self.points.setData(x=d[ok], y=y[ok], brush=brushes, symbol=symbols)
        ax = self.getPlotItem().getAxis("left")
        # a control's row is named by its shares (its word would only say whether the two controls differ)
        labels = [r.name if r.kind == "control" else f"{r.name}: {r.word}" for r in rows]
        ax.setTicks([[(float(y[i]), t) for i, t in enumerate(labels)]])
        from PySide6.QtGui import QFontMetrics  # every label whole: pyqtgraph drops tick text wider than the axis

        fm = QFontMetrics(ax.style.get("tickFont") or self.font())
        ax.setWidth(max((fm.horizontalAdvance(t) for t in labels), default=60) + 16)
        span = np.concatenate([lo[ok], hi[ok], [0.0]]) if ok.any() else np.array([-10.0, 10.0])
        pad = max(5.0, 0.1 * float(np.ptp(span)))
        self.getPlotItem().setXRange(float(span.min()) - pad, float(span.max()) + pad, padding=0)
        self.getPlotItem().setYRange(-0.6, max(n - 1, 0) + 0.6, padding=0)
        self._rows_height = 70 + 30 * max(n, 1)


class ComparisonPanel(QWidget):
    """The sentence, the forest plot, the folded details and the population plots. Items created once,
    filled by setData."""

    neuronPicked = Signal(int, str, int)  # side (0/1), hook, neuron

    def __init__(self, cmp_model: ComparisonBridge, parent=None) -> None:
        super().__init__(parent)
        self.verdict = QLabel("Comparing… (reading both neuron tables)")  # the one sentence
        self.verdict.setObjectName("compare_sentence")
        self.verdict.setWordWrap(True)
        f = self.verdict.font()
        f.setPointSizeF(f.pointSizeF() * 1.15)
        f.setBold(True)
        self.verdict.setFont(f)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.forest = ForestPlot()
        self.forest_rows: list[ForestRow] = []

        # the details, folded: every evidence line, what "holds" means, the pass shares with intervals
        self.details_button = QToolButton()
        self.details_button.setText("Details ▸")
        self.details_button.setCheckable(True)
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.evidence = QLabel("")
        self.evidence.setWordWrap(True)
        self.evidence.setTextFormat(Qt.TextFormat.RichText)
        self.evidence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.shares_label = QLabel("")
        self.shares_label.setTextFormat(Qt.TextFormat.RichText)
        details = QWidget()
        dl = QVBoxLayout(details)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.evidence)
        dl.addWidget(self.shares_label)
        dl.addStretch(1)
        self.details_scroll = QScrollArea()
        self.details_scroll.setWidgetResizable(True)
        self.details_scroll.setWidget(details)
        self.details_scroll.setVisible(False)
        self.details_button.toggled.connect(self._fold)

        # population plots, in their own tab (scrolls when the window is small)
        grid = QGridLayout()
        grid.setSpacing(6)
        self.legend = QLabel("")  # which colour is which model, above the plots (never cut by a plot's edge)
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, list] = {}
        for i, (key, title, _) in enumerate(POP_PLOTS):
            pw = self._plot(title, "share of neurons")
            curves = []
            for side, c in enumerate(COLORS):
                curves.append(pw.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(*c, 50),
                                      pen=pg.mkPen(c, width=1.6), name=f"side {side}"))
            self.plots[key], self.curves[key] = pw, curves
            grid.addWidget(pw, i // 3, i % 3)
        n_pop = len(POP_PLOTS)

        # the share of neurons passing each score, with 95% Wilson intervals
        self.share_plot = self._plot("share passing each automated score (95% interval)", "share of neurons")
        sp = self.share_plot.getPlotItem()
        sp.setYRange(0, 1)
        sp.getAxis("bottom").setHeight(40)
        self.share_bars = [pg.BarGraphItem(x=[0], height=[0], width=0.35, brush=(*c, 160)) for c in COLORS]
        self.share_err = [pg.ErrorBarItem(x=np.zeros(1), y=np.zeros(1), top=np.zeros(1), bottom=np.zeros(1),
                                          beam=0.1, pen=pg.mkPen((30, 30, 30), width=1.2)) for _ in COLORS]
        for item in self.share_bars + self.share_err:
            sp.addItem(item)
        grid.addWidget(self.share_plot, n_pop // 3, n_pop % 3)

        # token-rule vs rule explanation score: click a point to open that neuron on its side
        self.scatter_plot = self._plot("one dot per neuron: click to open it", metric_title("explain_score"))
        scp = self.scatter_plot.getPlotItem()
        scp.setLabel("bottom", metric_title("token_rule_score"))
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
        pop = QWidget()
        pl = QVBoxLayout(pop)
        pl.setContentsMargins(2, 2, 2, 2)
        pl.addWidget(self.legend)
        pl.addLayout(grid, 1)
        pop.setMinimumHeight(3 * 190)
        self.pop_scroll = QScrollArea()
        self.pop_scroll.setWidgetResizable(True)
        self.pop_scroll.setWidget(pop)

        evidence_tab = QWidget()
        el = QVBoxLayout(evidence_tab)
        el.setContentsMargins(2, 2, 2, 2)
        el.addWidget(self.forest, 1)
        el.addWidget(self.details_scroll, 2)
        self.views = QTabWidget()
        self.views.addTab(evidence_tab, "Evidence")
        self.views.addTab(self.pop_scroll, "Populations")
        self.views.setCornerWidget(self.details_button, Qt.Corner.TopRightCorner)
        self.views.currentChanged.connect(lambda i: self.details_button.setVisible(i == 0))

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.verdict)
        lay.addWidget(self.views, 1)
        self._hooks: list[np.ndarray] = [np.zeros(0, dtype=object)] * 2
        cmp_model.ready.connect(self.show_comparison)

    @staticmethod
    def _plot(title: str, left: str) -> pg.PlotWidget:
        """A population plot: title, x ticks, a y label with room for its tick numbers."""
        pw = pg.PlotWidget()
        pw.setMenuEnabled(False)
        pw.setMinimumHeight(170)
        pi = pw.getPlotItem()
        pi.setTitle(title, size="9pt")
        pi.showGrid(x=True, y=True, alpha=0.15)
        pi.setLabel("left", left)
        for ax in ("left", "bottom"):
            axis = pi.getAxis(ax)
            axis.enableAutoSIPrefix(False)
            axis.setStyle(showValues=True)
        pi.getAxis("left").setWidth(56)
        pi.getAxis("bottom").setHeight(28)
        return pw

    def _fold(self, on: bool) -> None:
        self.details_scroll.setVisible(on)
        self.details_button.setText("Details ▾" if on else "Details ▸")

    def show_comparison(self, cmp: Comparison) -> None:
        ev = cmp.evidence
        self.forest_rows = forest_rows(ev)
        self.forest.set_rows(self.forest_rows)
        names = tuple(getattr(ev, "names", None) or ("SoLU-LN", "GeLU"))
        self.verdict.setText(one_sentence(self.forest_rows, names) if self.forest_rows else cmp.verdict)
        if ev is not None:
            self.verdict.setToolTip(ev.help)
            self.evidence.setToolTip(ev.help)
            lines = [getattr(ev, "headline", "")] + list(getattr(ev, "lines", []))
            items = "".join(f"<li>{html.escape(line)}</li>" for line in lines if line)
            self.evidence.setText(f"<ul style='margin: 0'>{items}</ul><i>What “holds” means:</i> "
                                  f"{html.escape(ev.help)}")
        else:
            self.evidence.setText(html.escape(cmp.verdict))
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
        self.legend.setText("&nbsp;&nbsp;".join(
            f"<span style='color: rgb{COLORS[s]}; font-weight: bold'>■ {html.escape(cmp.labels[s])}</span>"
            for s in (0, 1)) + "&nbsp;&nbsp;<span style='color: #666'>(each plot: share of that model's neurons "
            "per bin)</span>")
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
        ax.setTicks([[(float(i), _two_lines(metric_title(n))) for i, n in enumerate(names)]])  # names side by side
        self.share_plot.getPlotItem().setXRange(-0.7, len(names) - 0.3)
        rows = []
        for i, n in enumerate(names):
            cells = []
            for side in (0, 1):
                r = cmp.shares[side][i]
                lo, hi = r.interval
                cells.append(f"<td style='color: rgb{COLORS[side]}'>&nbsp;{r.k}/{r.n} = {r.share:.0%} "
                             f"[{lo:.0%}, {hi:.0%}]&nbsp;</td>")
            rows.append(f"<tr><td>{html.escape(metric_title(n))} ≥ {cmp.shares[0][i].threshold:g}</td>"
                        f"{''.join(cells)}</tr>")
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
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setCollapsible(0, False)
        split.setCollapsible(1, False)
        split.setSizes([330, 770])
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
            self.resize(*fit_screen(self, 1700, 1100))
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
        h = self.menuBar().addMenu("&Help")
        h.addAction(act("&Keyboard shortcuts", self.show_keys, ["F1"]))

    def show_keys(self) -> QMessageBox:
        """F1: every shortcut (the main window's list: the compare window shares its keys)."""
        from neurobrowse.qt.keys import keys_html

        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", keys_html(),
                          QMessageBox.StandardButton.Close, self)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.finished.connect(box.deleteLater)
        box.show()
        self.error_boxes.append(box)
        return box

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
