"""The browser window of `neurobrowse open STORE`: neuron table on the left, the neuron page on the right.

Menus: File (open, recent stores, compare, checkpoint for try-your-text, quit), Go (back/forward,
next/previous neuron and layer, before/after LN, jump to neuron, bookmarks), View (panels, log
histogram, focus search / filter), Help (keys, about). Window geometry, splitters, recent stores and
bookmarks (per store run uuid) persist in QSettings.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from shiboken6 import isValid
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QInputDialog, QLabel, QMainWindow, QMenu, QMessageBox,
                               QToolBar, QWidget)

from neurobrowse import __version__
from neurobrowse.qt.bridge import BrowserBridge
from neurobrowse.qt.browser_pane import BrowserPane
from neurobrowse.qt.dialogs import close_boxes, show_error
from neurobrowse.qt.keys import KEYS_HELP, keys_html  # noqa: F401 - KEYS_HELP: also read from here
from neurobrowse.qt.settings import fit_screen, add_recent, app_settings, load_bookmarks, recent_stores, save_bookmarks

class MainWindow(QMainWindow):
    """One store's browser. ``closed`` fires after workers are stopped."""

    closed = Signal()
    exported = Signal(object)  # the export summary {path, format, n_neurons, ...}

    def __init__(self, browser: BrowserBridge | None = None, settings: QSettings | None = None,
                 label_panel: QWidget | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.browser = browser or BrowserBridge(self)
        if self.browser.parent() is None:
            self.browser.setParent(self)
        self.settings = settings or app_settings()
        self.setWindowTitle("neurobrowse")
        self.error_boxes: list[QMessageBox] = []

        self.pane = BrowserPane(self.browser, label_panel=label_panel, sizes=(650, 950))
        self.table_panel, self.page, self.split = self.pane.table_panel, self.pane.page, self.pane.split
        self.setCentralWidget(self.pane)

        self.status_label = QLabel("no store open")
        self.busy_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.busy_label)

        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._restore_settings()

        b = self.browser
        b.statusChanged.connect(self.status_label.setText)
        b.busyChanged.connect(lambda busy: self.busy_label.setText("working…" if busy else "ready"))
        b.errorRaised.connect(self.show_error)
        b.storeOpened.connect(self._on_store)
        b.labelsReady.connect(self._on_labels_ready)
        b.historyChanged.connect(self._on_history)
        b.bookmarksChanged.connect(self._on_bookmarks)
        b.neuronChanged.connect(self._on_neuron)

    # ---- actions ------------------------------------------------------------------------------------

    def _act(self, text: str, slot, keys=(), tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        seqs = []
        for k in keys:  # a standard key may expand to one already listed: keep each sequence once
            for seq in (QKeySequence.keyBindings(k) if isinstance(k, QKeySequence.StandardKey) else [QKeySequence(k)]):
                if seq not in seqs and not seq.isEmpty():
                    seqs.append(seq)
        if seqs:
            a.setShortcuts(seqs)
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setStatusTip(tip)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)  # shortcuts work even when the menu bar is hidden
        return a

    def _build_actions(self) -> None:
        b = self.browser
        self.a_open = self._act("&Open store…", self.open_dialog, [QKeySequence.StandardKey.Open])
        self.a_compare = self._act("&Compare with another store…", self.compare_dialog)
        self.a_ckpt = self._act("Set &checkpoint for try-your-text…", self.checkpoint_dialog)
        self.a_quit = self._act("&Quit", self.close, [QKeySequence("Ctrl+Q")])
        self.a_back = self._act("&Back", b.back, ["Alt+Left", QKeySequence.StandardKey.Back])
        self.a_fwd = self._act("&Forward", b.forward, ["Alt+Right", QKeySequence.StandardKey.Forward])
        self.a_back.setEnabled(False)
        self.a_fwd.setEnabled(False)
        self.a_next = self._act("&Next neuron", lambda: b.step_neuron(1), ["J", "Ctrl+Down"])
        self.a_prev = self._act("&Previous neuron", lambda: b.step_neuron(-1), ["K", "Ctrl+Up"])
        self.a_next_layer = self._act("Next &layer", lambda: b.step_layer(1), ["]", "Ctrl+PgDown"])
        self.a_prev_layer = self._act("Previous l&ayer", lambda: b.step_layer(-1), ["[", "Ctrl+PgUp"])
        self.a_ln = self._act("Before / after &LayerNorm", b.toggle_ln_side, ["M"],
                              "Flip between hook_mid and hook_post of the same neuron (SoLU-LN)")
        self.a_jump = self._act("&Jump to neuron…", self.jump_dialog, ["Ctrl+G"])
        self.a_bookmark = self._act("&Bookmark neuron", b.toggle_bookmark, ["Ctrl+D"])
        self.a_search = self._act("&Search top contexts", lambda: self._focus(self.table_panel.search), ["Ctrl+F"])
        self.a_filter = self._act("&Filter table", lambda: self._focus(self.table_panel.filter_edit), ["Ctrl+Shift+F"])
        self.a_editor = self._act("&Try your text", lambda: self._focus(self.page.live.editor), ["Ctrl+E"])
        self.a_table = self._act("Neuron &table", lambda on: self.table_panel.setVisible(on), ["Ctrl+1"],
                                 checkable=True)
        self.a_table.setChecked(True)
        self.a_live = self._act("Try-your-text &panel", lambda on: self.page.live.setVisible(on), ["Ctrl+2"],
                                checkable=True)
        self.a_live.setChecked(True)
        self.a_log = self._act("&Log-scale histogram", self.page.log_box.setChecked, checkable=True)
        self.page.log_box.toggled.connect(self.a_log.setChecked)
        self.a_export_one = self._act("&Export this neuron…", lambda: self.export_dialog("neuron"), ["Ctrl+Shift+E"],
                                      "Write the shown neuron (label, statistics, top snippets) to a file")
        self.a_export_rows = self._act("Export the &rows shown…", lambda: self.export_dialog("rows"),
                                       tip="Write every neuron the table shows (its filter, search and ★ only)")
        self.a_copy = self._act("&Copy snippet text", self.copy_snippet, ["Ctrl+Shift+C"],
                                "Copy the snippet under the mouse (or the first in view) as plain text")
        self.a_keys = self._act("&Keyboard shortcuts", self.show_keys, [QKeySequence.StandardKey.HelpContents])
        self.a_about = self._act("&About neurobrowse", self.show_about)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        f.addAction(self.a_open)
        self.recent_menu = f.addMenu("Open &recent")
        f.addAction(self.a_compare)
        f.addSeparator()
        f.addAction(self.a_export_one)
        f.addAction(self.a_export_rows)
        f.addSeparator()
        f.addAction(self.a_ckpt)
        f.addSeparator()
        f.addAction(self.a_quit)
        g = mb.addMenu("&Go")
        for a in (self.a_back, self.a_fwd, None, self.a_next, self.a_prev, self.a_next_layer, self.a_prev_layer,
                  self.a_ln, self.a_jump, None, self.a_bookmark):
            g.addSeparator() if a is None else g.addAction(a)
        self.bookmarks_menu = g.addMenu("Bookmar&ks")
        v = mb.addMenu("&View")
        for a in (self.a_table, self.a_live, self.a_log, None, self.a_search, self.a_filter, self.a_editor, None,
                  self.a_copy):
            v.addSeparator() if a is None else v.addAction(a)
        self.tools_menu = mb.addMenu("&Tools")
        self.tools_menu.addAction(self._act("Open a blinded &study…", self.study_dialog))
        h = mb.addMenu("&Help")
        h.addAction(self.a_keys)
        h.addAction(self.a_about)
        self._fill_recent()
        self._fill_bookmarks()

    def study_dialog(self) -> None:
        """Rate a blinded study (made with `neurobrowse study new`) in the StudyWindow."""
        path = QFileDialog.getExistingDirectory(self, "Open a blinded study directory", str(Path.cwd()))
        if path:
            self.open_study(path)

    def open_study(self, path: str | Path, rater: str | None = None):
        from neurobrowse.qt.study_window import StudyWindow
        from neurobrowse.study.session import StudySession
        from store.errors import NeurobrowseError

        try:
            win = StudyWindow(StudySession(path, rater=rater))
        except NeurobrowseError as e:
            self.show_error("Cannot open the study", str(e))
            return None
        win.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        win.setWindowTitle(f"neurobrowse study — {Path(path).name}")
        win.show()
        self.study_windows = [w for w in getattr(self, "study_windows", []) if isValid(w)] + [win]
        return win

    # ---- labels -------------------------------------------------------------------------------------

    @property
    def label_model(self):
        """The open store's LabelModel (None before a store is open or when labels are unavailable)."""
        return self.browser.label_model

    def _on_labels_ready(self, model) -> None:
        """The page's label panel over the store's LabelModel (opened with the store, in a worker)."""
        if model is None:
            self.page.set_label_panel(None)
            return
        from neurobrowse.qt.label_panel import LabelPanel

        panel = LabelPanel(model)
        panel.errorOccurred.connect(lambda msg: self.show_status(f"label: {msg}"))
        panel.undone.connect(self.show_status)
        self.page.set_label_panel(panel)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Navigation")
        tb.setObjectName("navigation")
        tb.setMovable(False)
        for a, label in ((self.a_back, "◀ Back"), (self.a_fwd, "Forward ▶"), (self.a_prev, "↑ Prev"),
                         (self.a_next, "↓ Next"), (self.a_prev_layer, "Layer −"), (self.a_next_layer, "Layer +"),
                         (self.a_ln, "Pre/post LN"), (self.a_jump, "Go to…"), (self.a_bookmark, "★")):
            a.setIconText(label)
            tb.addAction(a)
        self.addToolBar(tb)

    def _focus(self, w: QWidget) -> None:
        w.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if hasattr(w, "selectAll"):
            w.selectAll()

    # ---- opening and dialogs --------------------------------------------------------------------------

    def open_store(self, path: str | Path, hook: str | None = None, neuron: int | None = None) -> None:
        self.browser.open_store(path, hook=hook, neuron=neuron)

    def open_dialog(self) -> None:
        start = recent_stores(self.settings)[:1] or [str(Path.cwd())]
        path = QFileDialog.getExistingDirectory(self, "Open a neurobrowse store", start[0])
        if path:
            self.open_store(path)

    def compare_dialog(self) -> None:
        if self.browser.store is None:
            return
        path = QFileDialog.getExistingDirectory(self, "Compare with store", str(Path(self.browser.store.path).parent))
        if path:
            from neurobrowse.qt.compare_window import CompareWindow

            w = CompareWindow(settings=self.settings)
            w.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
            w.open_stores(self.browser.store.path, path)
            w.show()

    def checkpoint_dialog(self) -> None:
        cur = self.browser.checkpoint_dir()
        path = QFileDialog.getExistingDirectory(self, "Checkpoint directory (with model.safetensors)",
                                                str(cur.parent if cur else Path.cwd()))
        if path:
            self.browser.set_checkpoint(path)

    def jump_dialog(self) -> None:
        if self.browser.store is None:
            return
        n = int(self.browser.store.n_units(self.browser.hook))
        cur = self.browser.ref.neuron if self.browser.ref else 0
        value, ok = QInputDialog.getInt(self, "Jump to neuron", f"Neuron number (0-{n - 1}):", cur, 0, n - 1)
        if ok:
            self.browser.select(value)

    def show_error(self, title: str, message: str) -> QMessageBox:
        box = show_error(self, title, message)
        self.error_boxes = [b for b in self.error_boxes if isValid(b) and b.isVisible()] + [box]
        self.show_status(f"{title}: {' '.join(message.split()) if message else ''}", 8000)
        return box

    def show_status(self, text: str, ms: int = 8000) -> None:
        """A status-bar message: elided in the middle to the bar's width when too long, the whole text
        in the bar's tooltip (and in the dialog that goes with an error)."""
        bar = self.statusBar()
        width = max(200, bar.width() - self.busy_label.width() - 40)
        shown = bar.fontMetrics().elidedText(text, Qt.TextElideMode.ElideMiddle, width)
        bar.setToolTip(text if shown != text else "")
        bar.showMessage(shown, ms)

    def show_keys(self) -> QMessageBox:
        """F1: every shortcut of the app, in a box that does not block the window."""
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", keys_html(),
                          QMessageBox.StandardButton.Close, self)
        box.setObjectName("neurobrowse-keys")
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.finished.connect(box.deleteLater)
        box.show()
        self.error_boxes.append(box)  # closed with the window
        return box

    EXPORT_FILTERS = {"JSONL: label, statistics, top snippets (*.jsonl)": "jsonl", "CSV (*.csv)": "csv",
                      "OpenAI neuron-explainer NeuronRecords (*.jsonl)": "neuron-explainer"}

    def export_dialog(self, what: str) -> None:
        """File > Export: the shown neuron, or the rows the table shows, in a format picked in the dialog."""
        b = self.browser
        if b.store is None or b.ref is None:
            return
        name = b.ref.label().split(" (")[0].replace(" ", "_") + ".jsonl" if what == "neuron" else "neurons.jsonl"
        start = Path(b.store.path).parent / name
        path, chosen = QFileDialog.getSaveFileName(self, "Export neurons", str(start), ";;".join(self.EXPORT_FILTERS))
        if path:
            self.export_neurons(path, self.EXPORT_FILTERS.get(chosen, "jsonl"), what)

    def export_neurons(self, path: str | Path, fmt: str, what: str = "neuron") -> None:
        """Export in a worker (``what``: "neuron", the one shown, or "rows", the table's visible rows), with the
        store's labels; the status bar says where it went (a problem opens a dialog)."""
        from store.export.neurons import ExportConfig, export_store

        b = self.browser
        if b.store is None or b.ref is None:
            return
        neurons = [b.ref.neuron] if what == "neuron" else [int(n) for n in b.visible_order()]
        cfg = ExportConfig(fmt=fmt, neurons={b.ref.hook: neurons}, hooks=[b.ref.hook])
        store, db = b.store, (b.label_model.db if b.label_model is not None else None)

        def done(summary) -> None:
            self.show_status(f"exported {summary['n_neurons']} neuron(s) to {summary['path']}", 8000)
            self.exported.emit(summary)

        b.tasks.submit("export", lambda req: export_store(store, path, cfg, labels_db=db), done,
                       lambda e, tb: self.show_error("Export failed", str(e)))

    def copy_snippet(self) -> str:
        """Ctrl+Shift+C: the shown tab's snippet under the mouse (else the first in view) as text."""
        from neurobrowse.qt.snippet_view import SnippetView

        w = self.page.tabs.currentWidget()
        views = [w] if isinstance(w, SnippetView) else w.findChildren(SnippetView)
        view = next((v for v in views if v.snippets), None)
        if view is None:
            return ""
        text = view.copy_snippet()
        self.show_status(f"copied {len(text):,} characters of snippet text", 3000)
        return text

    def show_about(self) -> None:
        QMessageBox.about(self, "About neurobrowse",
                          f"<b>neurobrowse {__version__}</b><br>An offline neuron browser for the MLP neurons of "
                          "GeLU and SoLU-LN transformers (Elhage et al. 2022, <i>Softmax Linear Units</i>).")

    # ---- model -> window --------------------------------------------------------------------------------

    def _on_store(self, store) -> None:
        from neurobrowse.browsing.status_lines import store_title

        self.setWindowTitle(f"neurobrowse — {store_title(store)}")
        add_recent(self.settings, store.path)
        self._fill_recent()
        self.browser.set_bookmarks(load_bookmarks(self.settings, store.run_uuid))

    def _on_history(self, can_back: bool, can_fwd: bool) -> None:
        self.a_back.setEnabled(can_back)
        self.a_fwd.setEnabled(can_fwd)

    def _on_neuron(self, ref) -> None:
        if self.browser.store is not None:
            from neurobrowse.browsing.status_lines import store_title

            self.setWindowTitle(f"neurobrowse — {store_title(self.browser.store)} — {ref.label()}")

    def _on_bookmarks(self) -> None:
        st = self.browser.store
        if st is not None:
            save_bookmarks(self.settings, st.run_uuid, self.browser.bookmarks)
        self._fill_bookmarks()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = recent_stores(self.settings)
        for p in items:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda checked=False, p=p: self.open_store(p))
        self.recent_menu.setEnabled(bool(items))

    def _fill_bookmarks(self) -> None:
        m: QMenu = self.bookmarks_menu
        m.clear()
        for ref in self.browser.bookmarks:
            a = m.addAction(ref.label())
            a.triggered.connect(lambda checked=False, r=ref: self.browser.select(r.neuron, hook=r.hook))
        m.setEnabled(len(self.browser.bookmarks) > 0)

    # ---- settings and closing ---------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("main/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(*fit_screen(self, 1600, 950))
        st = s.value("main/state")
        if st is not None:
            self.restoreState(st)
        for key, split in (("main/split", self.split), ("main/page_split", self.page.body_split),
                           ("main/left_split", self.page.left_split), ("main/right_split", self.page.right_split)):
            v = s.value(key)
            if v is not None:
                split.restoreState(v)
        self.page.log_box.setChecked(s.value("main/log_hist", "false") in (True, "true"))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("main/geometry", self.saveGeometry())
        s.setValue("main/state", self.saveState())
        s.setValue("main/split", self.split.saveState())
        s.setValue("main/page_split", self.page.body_split.saveState())
        s.setValue("main/left_split", self.page.left_split.saveState())
        s.setValue("main/right_split", self.page.right_split.saveState())
        s.setValue("main/log_hist", self.page.log_box.isChecked())
        s.sync()

    def closeEvent(self, event) -> None:
        self.save_settings()
        for t in self.findChildren(type(self.table_panel._debounce)):
            t.stop()
        self.browser.shutdown()
        close_boxes(self.error_boxes)
        super().closeEvent(event)
        self.closed.emit()
