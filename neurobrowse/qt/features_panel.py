"""The dictionaries of one or more stores side by side: do features hide below the LayerNorm?

A table with one row per dictionary (FVU, loss recovered, L0, dead, the shares of features aligned with
one neuron, spread over many, passing the automated explanation, and hidden: active where no neuron
fires strongly), and under it the hidden candidates; double-clicking one emits ``featureActivated(store,
hook, feature)`` so a window can open that feature's page. The summaries (store.format.features.
dictionary_summary) are read in a worker. A widget of its own: a window adds it as a tab or dock.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QLabel, QListWidget, QListWidgetItem, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from neurobrowse.qt.tasks import TaskRunner


def load_summaries(paths: list[str]) -> list[dict]:
    """Every dictionary of the stores at ``paths``, summarised (runs in a worker)."""
    from store.format.features import dictionary_summary
    from store.format.reader import Store

    out = []
    for p in paths:
        st = Store.open(p)
        out += [{**dictionary_summary(st, h), "store": str(st.path), "act_fn": st.act_fn} for h in st.feature_hooks]
    return out


class DictionariesPanel(QWidget):
    """Side-by-side dictionary figures and hidden-feature candidates of ``stores``."""

    loaded = Signal(list)  # the summaries shown
    featureActivated = Signal(str, str, int)  # store path, feature hook, feature

    def __init__(self, stores: list[str], parent: QWidget | None = None, settings=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Dictionaries: features beside the neurons")
        self.stores = [str(s) for s in stores]
        self.tasks = TaskRunner(self, max_threads=1)
        self.status = QLabel("reading the dictionaries…")
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.hidden = QListWidget()
        self.hidden.itemActivated.connect(self._activated)
        self.hidden.itemDoubleClicked.connect(self._activated)
        lay = QVBoxLayout(self)
        for w in (self.status, self.table, self.note, QLabel("Hidden candidates (double-click to open):"), self.hidden):
            lay.addWidget(w)
        self.summaries: list[dict] = []
        self.reload()

    def reload(self) -> None:
        paths = list(self.stores)
        self.tasks.submit("dictionaries", lambda req: load_summaries(paths), self._show, self._failed)

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.status.setText(f"could not read the dictionaries: {exc}")

    def _show(self, summaries: list[dict]) -> None:
        from store.format.features import HIDDEN_PEAK, HIDDEN_SHARE, report_rows

        self.summaries = summaries
        rows = report_rows(summaries)
        head, body = ["model"] + rows[0], [[s.get("act_fn", "")] + r for s, r in zip(summaries, rows[1:])]
        self.table.setColumnCount(len(head))
        self.table.setHorizontalHeaderLabels(head)
        self.table.setRowCount(len(body))
        for i, r in enumerate(body):
            for j, v in enumerate(r):
                self.table.setItem(i, j, QTableWidgetItem(v))
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(summaries)} dictionar{'y' if len(summaries) == 1 else 'ies'} in "
                            f"{len(self.stores)} store(s)" if summaries else
                            "no dictionaries: train one with `neurobrowse features train STORE --hook HOOK`")
        self.note.setText(f"aligned: |cos| >= 0.9 with one neuron; spread: < 0.5 (over the live features); "
                          f"explained: rule explanation score >= 0.7; hidden: >= {HIDDEN_SHARE:.0%} of the top "
                          f"firings where no neuron reaches {HIDDEN_PEAK:.0%} of its maximum")
        self.hidden.clear()
        for s in summaries:
            for e in s.get("hidden_examples") or []:
                item = QListWidgetItem(f"{s.get('act_fn', '')} {s['hook']} #{e['feature']}: max {e['max_act']:.3g}, "
                                       f"hidden {e['hidden_share']:.0%}, |cos| {e['max_cos']:.2f} — "
                                       f"{e['explanation'] or 'no rule'}")
                item.setData(Qt.ItemDataRole.UserRole, (s["store"], s["hook"], int(e["feature"])))
                self.hidden.addItem(item)
        self.loaded.emit(summaries)

    def _activated(self, item: QListWidgetItem) -> None:
        store, hook, feature = item.data(Qt.ItemDataRole.UserRole)
        self.featureActivated.emit(store, hook, feature)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.tasks.shutdown()
        super().closeEvent(event)
