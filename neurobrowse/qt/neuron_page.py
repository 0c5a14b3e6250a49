"""One neuron's page: shaded snippets (top, bottom, quantile samples, before/after LN), the activation
histogram, top tokens, logit effects, statistics, the label panel and the try-your-text editor.

Every item is created once in ``__init__``; ``pageReady`` only updates text, table cells and plot
data (``setData``), which keeps switching neurons cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QSizePolicy,
                               QSplitter,
                               QTableWidget, QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from neurobrowse.histogram import equal_width
from neurobrowse.qt.live_editor import TryTextPanel
from neurobrowse.qt.snippet_view import SnippetView
from neurobrowse.snippet_text import bin_title, visible_token
from neurobrowse.browsing.pages import NeuronPage
from neurobrowse.browsing.navigation import NeuronRef
from store.measures import columns
from store.schema import parse_hook_name

pg.setConfigOptions(antialias=True, background="w", foreground=(60, 60, 60))

STAT_ROWS = [(c.name, c.title) for c in columns.COLUMNS if c.numeric and c.name != "neuron"]


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "—" if not math.isfinite(f) else f"{f:.4g}"


def in_context_text(store, passage) -> tuple[str, int]:
    """The text the model saw with a firing (the passage's tokens that are not greyed, decoded with the
    store's tokenizer, so bytes split over tokens come out whole) and the character offset of the firing
    token in it."""
    keep = [i for i, g in enumerate(passage.greyed) if not g]
    ids = [int(passage.token_ids[i]) for i in keep]
    fire = passage.firing[0] if passage.firing else (keep[0] if keep else 0)
    before = [int(passage.token_ids[i]) for i in keep if i < fire]
    try:
        tok = store.tokenizer
        return tok.decode(ids, skip_special_tokens=False), len(tok.decode(before, skip_special_tokens=False))
    except Exception:  # no tokenizer in the store: the readable pieces with their real characters back
        from neurobrowse.snippet_text import raw_text

        return raw_text([passage.tokens[i] for i in keep]), len(raw_text([passage.tokens[i] for i in keep if i < fire]))


class _SmallTable(QTableWidget):
    """A fixed-size read-only table whose cells are created once and then only re-texted."""

    def __init__(self, headers: list[str], rows: int, parent=None) -> None:
        super().__init__(rows, len(headers), parent)
        self.setHorizontalHeaderLabels(headers)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(19)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(headers)):  # fixed widths: fill() updates cells without per-cell signals
            self.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeMode.Fixed)
            self.setColumnWidth(c, 72)
        mono = QFont("DejaVu Sans Mono")
        mono.setPointSizeF(9)
        for r in range(rows):
            for c in range(len(headers)):
                it = QTableWidgetItem("")
                if c == 0:
                    it.setFont(mono)
                else:
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(r, c, it)

    MIN_ROWS = 5  # at a small window (1366 x 768) the table scrolls below this many rows

    def sizeHint(self) -> QSize:  # every row, no scrollbar, where there is room
        return QSize(super().sizeHint().width(), self.rows_height())

    def minimumSizeHint(self) -> QSize:
        return QSize(super().minimumSizeHint().width(), self.rows_height(min(self.MIN_ROWS, self.rowCount())))

    def rows_height(self, rows: int | None = None) -> int:
        """Pixels that show the header and every row without a scrollbar."""
        rows = self.rowCount() if rows is None else rows
        return (self.horizontalHeader().sizeHint().height() + rows * self.verticalHeader().defaultSectionSize()
                + 2 * self.frameWidth() + 2)

    def fill(self, rows: list[tuple]) -> None:
        """New cell texts with the model's signals blocked (one repaint instead of one per cell); the number
        columns then widen to their widest text, so no number is clipped."""
        model = self.model()
        model.blockSignals(True)
        try:
            self._fill(rows)
        finally:
            model.blockSignals(False)
        fm = self.fontMetrics()
        for c in range(1, self.columnCount()):
            texts = [self.item(r, c).text() for r in range(self.rowCount())] + [self.horizontalHeaderItem(c).text()]
            self.setColumnWidth(c, max(56, max(fm.horizontalAdvance(t) for t in texts) + 16))
        self.viewport().update()

    def _fill(self, rows: list[tuple]) -> None:
        for r in range(self.rowCount()):
            vals = rows[r] if r < len(rows) else ("",) * self.columnCount()
            for c in range(self.columnCount()):
                v = vals[c] if c < len(vals) else ""
                self.item(r, c).setText(v if isinstance(v, str) else _fmt(v))
                if c == 0:
                    self.item(r, c).setToolTip(repr(v) if isinstance(v, str) else "")


class HistogramPlot(pg.PlotWidget):
    """The activation histogram of one neuron in equal-width bins (neurobrowse.histogram), with the
    top-k range shaded and the quantile edges of the sample bins marked; every item is created once
    and updated with setData / setPos / setRegion."""

    QUANTILE_NAMES = ("q0.5", "q0.9", "q0.99", "q0.999")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(96)
        self.setMenuEnabled(False)
        self.getPlotItem().setLabel("bottom", "activation")
        self.getPlotItem().setLabel("left", "tokens per bin")
        self.getPlotItem().showGrid(x=True, y=True, alpha=0.15)
        for ax in ("left", "bottom"):
            self.getPlotItem().getAxis(ax).enableAutoSIPrefix(False)
        self.top_range = pg.LinearRegionItem(values=(0, 0), movable=False, brush=(255, 170, 0, 60),
                                             pen=pg.mkPen((230, 140, 0, 120)))
        self.top_range.setToolTip("the range of the top-k activations shown in the snippets")
        self.top_range.setZValue(-10)
        self.addItem(self.top_range)
        self.curve = self.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=(200, 40, 40, 90),
                               pen=pg.mkPen((170, 20, 20), width=1.2), antialias=False)
        self.zero = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen((120, 120, 120), style=Qt.PenStyle.DashLine))
        self.addItem(self.zero)
        self.quantile_lines = []
        for i, name in enumerate(self.QUANTILE_NAMES):  # labels at staggered heights: close edges stay legible
            line = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen((40, 90, 200), width=1, style=Qt.PenStyle.DotLine),
                                   label=name, labelOpts={"position": 0.95 - 0.12 * i, "color": (40, 90, 200),
                                                          "fill": (255, 255, 255, 200)})
            line.setVisible(False)
            self.addItem(line)
            self.quantile_lines.append(line)
        self.log = False
        self._edges = np.array([0.0, 1.0])
        self._counts = np.array([0.0])

    def sizeHint(self) -> QSize:  # room for the plot, not more: the tables below show every row
        return QSize(400, 190)

    def set_hist(self, edges, counts, lo: float | None = None, hi: float | None = None,
                 quantiles: dict | None = None, top_range: tuple[float, float] | None = None) -> None:
        """edges [H + 1] (shared by the hook) and counts [H]: redrawn in equal-width bins over [lo, hi]
        (default: the occupied bins); ``quantiles`` {"0.5": value, ...} marked by lines, ``top_range``
        shaded."""
        edges = np.asarray(edges, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        nz = np.flatnonzero(counts)
        if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
            lo, hi = (edges[nz[0]], edges[nz[-1] + 1]) if len(nz) and len(edges) == len(counts) + 1 else (0.0, 1.0)
        self._edges, self._counts = equal_width(edges, counts, float(lo), float(hi))
        q = [float(v) for _k, v in sorted((quantiles or {}).items(), key=lambda kv: float(kv[0]))]
        for i, line in enumerate(self.quantile_lines):
            ok = bool(i < len(q) and np.isfinite(q[i]))
            line.setVisible(ok)
            if ok:
                line.setPos(q[i])
        if top_range is not None and bool(np.all(np.isfinite(top_range))):
            self.top_range.setRegion(tuple(sorted(top_range)))
            self.top_range.setVisible(True)
        else:
            self.top_range.setVisible(False)
        self._redraw()

    def set_log(self, on: bool) -> None:
        self.log = bool(on)
        self.getPlotItem().setLabel("left", "log10(1 + tokens per bin)" if on else "tokens per bin")
        self._redraw()

    def _redraw(self) -> None:
        y = np.log10(1.0 + self._counts) if self.log else self._counts
        if len(self._edges) == len(y) + 1:
            self.curve.setData(self._edges, y)
        self.getPlotItem().enableAutoRange()


class NeuronPageWidget(QWidget):
    """Shows the browser's current neuron. ``label_panel`` is the store's LabelPanel when available."""

    openInEditor = Signal(str)

    def __init__(self, browser, label_panel: QWidget | None = None, parent=None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.page: NeuronPage | None = None

        # header
        self.title = QLabel("No neuron")
        tf = self.title.font()
        tf.setPointSizeF(tf.pointSizeF() * 1.35)
        tf.setBold(True)
        self.title.setFont(tf)
        self.subtitle = QLabel("")
        self.subtitle.setStyleSheet("color: palette(placeholder-text);")
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for lab in (self.title, self.subtitle):  # long lines wrap: a neuron's text never sets the page's width
            lab.setWordWrap(True)
            lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.bookmark_btn = QToolButton()
        self.bookmark_btn.setText("☆ Bookmark")
        self.bookmark_btn.setCheckable(True)
        self.bookmark_btn.setToolTip("Bookmark this neuron (Ctrl+D)")
        # one width for both texts: (un)bookmarking must not resize the header and with it the splitters
        fm = self.bookmark_btn.fontMetrics()
        self.bookmark_btn.setFixedWidth(max(fm.horizontalAdvance(t) for t in ("☆ Bookmark", "★ Bookmarked")) + 24)
        self.loading = QLabel("")
        self.loading.setStyleSheet("color: #a33;")
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)
        head.addWidget(self.loading)
        head.addWidget(self.bookmark_btn)

        # snippets
        self.top_view = SnippetView()
        self.bottom_view = SnippetView()
        self.samples_view = SnippetView()
        self.mid_view = SnippetView()
        self.post_view = SnippetView()
        self.mid_label = QLabel("hook_mid: before the LayerNorm")
        self.post_label = QLabel("hook_post: after the LayerNorm")
        for lab in (self.mid_label, self.post_label):  # long titles wrap instead of widening the left side for good
            lab.setWordWrap(True)
            lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for v in (self.mid_view, self.post_view):
            v.setMinimumWidth(80)
        ln = QWidget()
        lnl = QGridLayout(ln)
        lnl.setContentsMargins(0, 0, 0, 0)
        lnl.addWidget(self.mid_label, 0, 0)
        lnl.addWidget(self.post_label, 0, 1)
        lnl.addWidget(self.mid_view, 1, 0)
        lnl.addWidget(self.post_view, 1, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.top_view, "Top activations")
        self.tabs.addTab(self.bottom_view, "Bottom")
        self.tabs.addTab(self.samples_view, "Quantile samples")
        self.ln_tab = self.tabs.addTab(ln, "Before / after LN")
        self.tabs.setTabToolTip(self.ln_tab, "SoLU-LN only: the same neuron before (hook_mid) and after (hook_post) "
                                "the LayerNorm; features can hide in small pre-LN activations")
        for v in (self.top_view, self.bottom_view, self.samples_view, self.mid_view, self.post_view):
            v.openInEditor.connect(self.openInEditor)
            v.editRequested.connect(lambda si, v=v: self._edit(v, si))
            v.expandRequested.connect(lambda si, v=v: self._expand(v, si))
        self._view_refs: dict = {}  # snippet view -> the NeuronRef its snippets belong to

        self.live = TryTextPanel(browser)
        self.openInEditor.connect(self.live.set_text)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.tabs)
        left.addWidget(self.live)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        self.left_split = left

        # right column: histogram, top tokens, logit effects, stats, label panel
        self.hist = HistogramPlot()
        self.log_box = QCheckBox("log scale")
        self.log_box.toggled.connect(self.hist.set_log)
        hist_box = QGroupBox("Activation histogram")
        hb = QVBoxLayout(hist_box)
        hb.setContentsMargins(4, 4, 4, 4)
        hb.addWidget(self.hist)
        hb.addWidget(self.log_box, 0, Qt.AlignmentFlag.AlignRight)

        self.top_tokens = _SmallTable(["token", "mean act", "count"], 16)
        self.logit_up = _SmallTable(["pushes up", "effect"], 12)
        self.logit_down = _SmallTable(["pushes down", "effect"], 12)
        lg = QWidget()
        lgl = QHBoxLayout(lg)
        lgl.setContentsMargins(0, 0, 0, 0)
        lgl.addWidget(self.logit_up)
        lgl.addWidget(self.logit_down)
        self.stats = _SmallTable(["statistic", "value"], len(STAT_ROWS))
        # one table at a time at its full height: every row shows, no table needs its own scrollbar
        self.info_tabs = QTabWidget()
        self.info_tabs.addTab(self.top_tokens, "Top tokens")
        self.info_tabs.addTab(lg, "Logit effects")
        self.info_tabs.addTab(self.stats, "Statistics")
        self.info_tabs.setTabToolTip(0, "Tokens with the highest mean activation (seen at least a few times)")
        self.info_tabs.setTabToolTip(1, "Direct logit effects of the neuron's output weights (W_out · W_U)")
        tt_box = self.info_tabs

        right = QSplitter(Qt.Orientation.Vertical)
        for w in (hist_box, tt_box):
            right.addWidget(w)
        right.setCollapsible(1, False)
        # the LabelPanel goes here once a store (and so a label model) is open; see set_label_panel
        self.label_box = QGroupBox("Label")
        self.label_layout = QVBoxLayout(self.label_box)
        self.label_layout.setContentsMargins(4, 4, 4, 4)
        self.label_panel: QWidget | None = None
        self.label_box.setVisible(False)
        right.addWidget(self.label_box)
        if label_panel is not None:
            self.set_label_panel(label_panel)
        self.right_split = right

        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(right)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        self.body_split = body

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addLayout(head)
        lay.addWidget(body, 1)

        self.tabs.currentChanged.connect(lambda i: self._render_current_tab())
        self.bookmark_btn.clicked.connect(lambda: browser.toggle_bookmark())
        browser.neuronChanged.connect(self._on_neuron)
        browser.pageReady.connect(self.show_page)
        browser.bookmarksChanged.connect(self._sync_bookmark)
        browser.busyChanged.connect(self._on_busy)

    def set_label_panel(self, panel: QWidget | None) -> None:
        """Put a label panel (one per open store) in the page, replacing the previous one."""
        if self.label_panel is not None:
            self.label_layout.removeWidget(self.label_panel)
            self.label_panel.deleteLater()
        self.label_panel = panel
        if panel is not None:
            self.label_layout.addWidget(panel)
        self.label_box.setVisible(panel is not None)

    # ---- updates ------------------------------------------------------------------------------------

    def _on_neuron(self, ref) -> None:
        self.title.setText(f"Layer {ref.layer} · neuron {ref.neuron}")
        self.loading.setText("loading…" if self.page is None or self.page.ref != ref else "")
        self._sync_bookmark()

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self.loading.setText("")

    def _sync_bookmark(self) -> None:
        ref = self.browser.ref
        on = ref is not None and ref in self.browser.bookmarks
        self.bookmark_btn.setChecked(on)
        self.bookmark_btn.setText("★ Bookmarked" if on else "☆ Bookmark")

    def show_page(self, page: NeuronPage) -> None:
        self.page = page
        v, ref = page.view, page.ref
        st = v.stats
        self.loading.setText("")
        self.title.setText(f"Layer {ref.layer} · neuron {ref.neuron}")
        act = self.browser.store.model_config.get("act_fn", "") if self.browser.store is not None else ""
        self.subtitle.setText(
            f"{ref.hook} · {act} · max {_fmt(st.get('max_act'))} · density {_fmt(st.get('density'))} · "
            f"kurtosis {_fmt(st.get('kurtosis'))} · " + " · ".join(
                f"{columns.BY_NAME[k].title} {_fmt(st.get(k))}" for k in ("token_rule_score", "sim_score",
                                                                         "explain_score")) + "\n"
            f"rule: {v.explanation or 'none (no rule matches two distinct top firings)'}")
        # the visible tab renders now; the others when they are first shown (switching stays cheap)
        self._view_refs = {self.top_view: ref, self.bottom_view: ref, self.samples_view: ref}
        self._dirty = {self.top_view: self._render_top, self.bottom_view: self._render_bottom,
                       self.samples_view: self._render_samples, self.mid_view.parentWidget(): self._render_ln}
        self._render_current_tab()
        tops = [s.value for s in v.top if np.isfinite(s.value)]
        self.hist.set_hist(v.hist_edges, v.hist_counts, st.get("min_act"), st.get("max_act"), st.get("quantiles"),
                           (min(tops), max(tops)) if tops else None)
        self.top_tokens.fill([(visible_token(t), m, str(int(c))) for t, m, c in v.top_tokens])
        self.logit_up.fill([(visible_token(t), x) for t, x in v.logit_up])
        self.logit_down.fill([(visible_token(t), x) for t, x in v.logit_down])
        self.stats.fill([(name, st.get(key, float("nan"))) for key, name in STAT_ROWS])
        self.tabs.setTabEnabled(self.ln_tab, page.paired is not None)
        self._sync_bookmark()

    def _snippet_at(self, view: SnippetView, si: int):
        """(neuron ref, snippet, position of its firing token) of snippet ``si`` of ``view``; None when gone."""
        ref = self._view_refs.get(view, self.page.ref if self.page is not None else None)
        if ref is None or not 0 <= si < len(view.snippets):
            return None
        sn = view.snippets[si]
        return ref, sn, sn.start + (sn.firing[0] if sn.firing else 0)

    def _expand(self, view: SnippetView, si: int) -> None:
        """Read snippet ``si``'s whole context off the GUI thread and show it in place when it arrives
        (unless the view has moved on to other snippets meanwhile)."""
        at = self._snippet_at(view, si)
        if at is None:
            return
        ref, sn, position = at

        def done(passage) -> None:
            if si < len(view.snippets) and view.snippets[si] is sn:
                view.expand(si, passage)

        self.browser.request_passage(ref, position, done)

    def _edit(self, view: SnippetView, si: int) -> None:
        """'edit' on a snippet: read the whole context the model saw with that firing (off the GUI thread),
        put exactly that text in the try-your-text editor and show the recorded value beside the re-run one."""
        at = self._snippet_at(view, si)
        if at is None:
            return
        ref, sn, position = at

        def done(passage) -> None:
            text, offset = in_context_text(self.browser.store, passage)
            self.live.set_text(text, recorded=(offset, float(sn.value), ref))

        self.browser.request_passage(ref, position, done)

    def _render_current_tab(self) -> None:
        w = self.tabs.currentWidget()
        fn = self._dirty.pop(w, None) if hasattr(self, "_dirty") else None
        if fn is not None:
            fn()

    def render_all(self) -> None:
        """Render every tab now (screenshots, tests that read a hidden tab)."""
        for fn in list(getattr(self, "_dirty", {}).values()):
            fn()
        self._dirty = {}

    def _render_top(self) -> None:
        self.top_view.show_snippets(self.page.top, self.page.scale, "no top activations stored",
                                    highlights=self.browser.search_highlights(self.page.top))

    def _render_bottom(self) -> None:  # on its own scale: the most negative firing is the darkest blue
        page = self.page
        self.bottom_view.show_snippets(page.bottom, page.scale, "no bottom activations stored",
                                       scales=[page.bottom_scale] * len(page.bottom),
                                       highlights=self.browser.search_highlights(page.bottom))

    def _render_samples(self) -> None:
        page = self.page
        merged, headers, scales = [], {}, []
        for name, snips in page.samples.items():  # bins as in store.schema.SAMPLE_BINS, strongest first
            if snips:
                lo, hi = page.bin_ranges.get(name, (float("nan"), float("nan")))
                headers[len(merged)] = bin_title(name, lo, hi)
                merged.extend(snips)
                scales += [page.sample_scales.get(name, (page.scale, page.scale))] * len(snips)  # each bin its own
        self.samples_view.show_snippets(merged, page.scale, "no quantile samples stored", headers, scales=scales,
                                        highlights=self.browser.search_highlights(merged))

    def _render_ln(self) -> None:
        page = self.page
        v, ref = page.view, page.ref
        if page.paired is not None:
            if parse_hook_name(ref.hook)[1] == "hook_mid":
                mid, mid_s, mid_scale = v, page.top, page.scale
                post, post_s, post_scale = page.paired, page.paired_top, page.paired_scale
            else:
                mid, mid_s, mid_scale = page.paired, page.paired_top, page.paired_scale
                post, post_s, post_scale = v, page.top, page.scale
            self.mid_label.setText(f"<b>hook_mid</b> (before LN) · max {_fmt(mid.stats.get('max_act'))} · "
                                   f"kurtosis {_fmt(mid.stats.get('kurtosis'))}")
            self.post_label.setText(f"<b>hook_post</b> (after LN) · max {_fmt(post.stats.get('max_act'))} · "
                                    f"kurtosis {_fmt(post.stats.get('kurtosis'))}")
            self._view_refs[self.mid_view] = NeuronRef(mid.hook, ref.neuron)
            self._view_refs[self.post_view] = NeuronRef(post.hook, ref.neuron)
            self.mid_view.show_snippets(mid_s, mid_scale, highlights=self.browser.search_highlights(mid_s))
            self.post_view.show_snippets(post_s, post_scale, highlights=self.browser.search_highlights(post_s))
        else:
            self.mid_view.clear_snippets("This store has no hook_mid for this layer (GeLU models have no LayerNorm "
                                         "after the activation).")
            self.post_view.clear_snippets("")
