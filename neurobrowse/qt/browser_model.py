"""The app's model: the browsing state of one window plus its background work, as Qt signals.

Widgets take a ``BrowserModel`` in ``__init__`` and connect to its signals there; they call its
methods for every action. The model asks ``neurobrowse.state`` (pure Python) for the logic and runs
every store or model access through a ``TaskRunner`` so the GUI thread never touches disk.
"""

from __future__ import annotations

import gc
from pathlib import Path


import numpy as np
from PySide6.QtCore import QObject, Signal

from neurobrowse import state
from neurobrowse.qt.tasks import TaskRunner
from neurobrowse.state import NeuronRef, TableFilter
from store.errors import NeurobrowseError


def _open_store(path: str | Path):
    from store.reader import Store  # imported lazily: keeps app start-up light

    return Store.open(path)


class BrowserModel(QObject):
    """State + signals for one store's browsing session.

    Signals (all on the GUI thread):
      storeOpened(store)              a store was opened; hooks and manifest are readable
      statusChanged(str)              one line for the status bar
      hookChanged(str)                the current hook (layer) changed
      tableReady(str, dict)           the neuron table of a hook: hook, columns
      filterApplied(object)           bool mask [neuron] of rows passing the filter + search
      sortChanged(str, bool)          table sort column key, descending
      neuronChanged(object)           NeuronRef selected (page may still be loading)
      pageReady(object)               state.NeuronPage for the current neuron
      historyChanged(bool, bool)      can go back, can go forward
      bookmarksChanged()
      labelsChanged(str)              labels of a hook changed (table column)
      liveReady(object)               solu_core.live.LiveResult for the current neuron
      liveStateChanged(str)           "no checkpoint" / "loading model" / "ready" / error text
      errorRaised(str, str)           title, message (what went wrong and how to fix it)
      busyChanged(bool)
    """

    storeOpened = Signal(object)
    statusChanged = Signal(str)
    hookChanged = Signal(str)
    tableReady = Signal(str, object)
    filterApplied = Signal(object)
    sortChanged = Signal(str, bool)
    neuronChanged = Signal(object)
    pageReady = Signal(object)
    historyChanged = Signal(bool, bool)
    bookmarksChanged = Signal()
    labelsChanged = Signal(str)
    liveReady = Signal(object)
    liveStateChanged = Signal(str)
    errorRaised = Signal(str, str)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, prefetch: bool = True) -> None:
        super().__init__(parent)
        self.tasks = TaskRunner(self)
        self.tasks.busyChanged.connect(self.busyChanged)
        self.tasks.failed.connect(self._on_failed)
        self.store = None
        self.hook: str | None = None
        self.ref: NeuronRef | None = None
        self.page: state.NeuronPage | None = None
        self.tables: dict[str, dict[str, np.ndarray]] = {}
        self.labels: dict[str, dict[int, str]] = {}  # hook -> neuron -> label text
        self.searches: dict[str, state.ContextSearch] = {}
        self.filter = TableFilter()
        self.mask: np.ndarray | None = None
        self.sort_key, self.sort_desc = "neuron", False
        self.history = state.History()
        self.bookmarks = state.Bookmarks()
        self.pages = state.PageCache()
        self.size_bytes: int | None = None
        self.prefetch = prefetch
        self.live_text = ""
        self._live = None  # solu_core.live.LiveModel, created on first use
        self.checkpoint_override: Path | None = None
        self._pending_select: int | None = None

    # ---- opening ------------------------------------------------------------------------------------

    def open_store(self, path: str | Path, hook: str | None = None, neuron: int | None = None) -> None:
        """Open in a worker; on success emit storeOpened, then load the first indexed hook's table."""
        path = Path(path)
        self.statusChanged.emit(f"opening {path} ...")

        def work(req):
            store = _open_store(path)
            req.check()
            problems = state.store_problems(store)
            return store, problems

        def done(result):
            store, problems = result
            self._set_store(store)
            for p in problems:
                self.errorRaised.emit("Store not ready", p)
            indexed = [h for h in store.hooks if store.is_indexed(h)]
            first = hook if hook in store.hooks else (indexed[0] if indexed else (store.hooks[0] if store.hooks else None))
            if first is not None:
                self.set_hook(first, neuron=neuron if neuron is not None else 0)

        self.tasks.submit("open", work, done, lambda e, tb: self._error("Cannot open store", e, tb))

    def _set_store(self, store) -> None:
        self.store = store
        self.tables.clear()
        self.searches.clear()
        self.pages.clear()
        self.history = state.History()
        self.historyChanged.emit(False, False)
        self.ref, self.page, self.hook = None, None, None
        self._live = None
        self.size_bytes = None
        self.storeOpened.emit(store)
        self._emit_status()
        self.tasks.submit("size", lambda req: store.size_on_disk(), self._on_size, lambda e, tb: None)

    def _on_size(self, n: int) -> None:
        self.size_bytes = int(n)
        self._emit_status()

    def _emit_status(self) -> None:
        if self.store is not None:
            self.statusChanged.emit(state.store_status(self.store, self.size_bytes))

    # ---- hooks and the table ------------------------------------------------------------------------

    def set_hook(self, hook: str, neuron: int | None = None) -> None:
        if self.store is None or hook not in self.store.hooks:
            return
        changed = hook != self.hook
        self.hook = hook
        if changed:
            self.hookChanged.emit(hook)
        target = neuron if neuron is not None else (self.ref.neuron if self.ref else 0)
        if hook in self.tables:
            self._apply_filter()
            self.select(target)
            return
        if not self.store.is_indexed(hook):
            if not self.store.complete:
                return  # the "incomplete recording" notice on open already says what to run, once
            self.errorRaised.emit("Not indexed", f"{hook} in {self.store.path} is not indexed yet; "
                                  f"run `neurobrowse index {self.store.path}` and reopen the store.")
            return
        self._pending_select = target
        store = self.store

        def work(req):
            return store.neuron_table(hook)

        def done(table):
            self.tables[hook] = {k: np.asarray(v) for k, v in table.items()}
            # Everything alive now (Qt wrappers, the store's token strings and caches, this table) lives
            # as long as the window: move it out of the cyclic GC's reach. Without this, full (gen 2)
            # collections scanned it all and froze the event loop for 85-116 ms while browsing
            # (benchmarks/bench_app.py); gc.freeze is O(1) and later garbage is still collected.
            gc.freeze()
            if hook != self.hook:
                return
            self.tableReady.emit(hook, self.tables[hook])
            self._apply_filter()
            sel, self._pending_select = self._pending_select, None
            self.select(sel if sel is not None else 0)

        self.tasks.submit("table", work, done, lambda e, tb: self._error("Cannot read the neuron table", e, tb))

    def table(self) -> dict[str, np.ndarray] | None:
        return self.tables.get(self.hook) if self.hook else None

    def set_labels(self, hook: str, labels: dict[int, str]) -> None:
        """Labels from the label database (a table column, filterable with `label ~ ...`)."""
        self.labels[hook] = dict(labels)
        self.labelsChanged.emit(hook)
        if hook == self.hook:
            self._apply_filter()

    def label_column(self, hook: str, n: int) -> np.ndarray:
        lab = self.labels.get(hook, {})
        return np.array([lab.get(i, "") for i in range(n)], dtype=object)

    # ---- filter, search, sort ---------------------------------------------------------------------

    def set_filter(self, flt: TableFilter) -> None:
        """Validate now (bad expressions raise a dialog), search contexts in a worker, then emit the mask."""
        try:
            state.parse_filter(flt.expression)
        except NeurobrowseError as e:
            self.errorRaised.emit("Bad filter", str(e))
            return
        self.filter = flt
        self._apply_filter()

    def _apply_filter(self) -> None:
        table = self.table()
        if table is None:
            return
        hook, flt = self.hook, self.filter
        n = len(table["neuron"])
        cols = dict(table)
        cols["label"] = self.label_column(hook, n)
        mask = state.apply_filter(cols, state.parse_filter(flt.expression))
        if flt.bookmarked_only:
            marked = {r.neuron for r in self.bookmarks if r.hook == hook}
            mask &= np.isin(table["neuron"], list(marked))
        if not flt.search:
            self._set_mask(mask)
            return
        store, searches = self.store, self.searches

        def work(req):
            if hook not in searches:
                searches[hook] = state.ContextSearch.from_store(store, hook, req)
            req.check()
            return searches[hook].search(flt.search, flt.search_mode)

        def done(found):
            if hook == self.hook:
                self._set_mask(mask & found)

        self.tasks.submit("search", work, done, lambda e, tb: self._error("Search failed", e, tb))

    def _set_mask(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.filterApplied.emit(mask)

    def set_sort(self, key: str, descending: bool) -> None:
        if (key, descending) != (self.sort_key, self.sort_desc):
            self.sort_key, self.sort_desc = key, descending
            self.sortChanged.emit(key, descending)

    def sort_ranks(self, key: str) -> np.ndarray:
        """Unique rank of each row by ``key`` (ties broken by neuron number): the table's sort order."""
        table = self.table()
        if table is None:
            return np.zeros(0, dtype=np.int64)
        n = len(table["neuron"])
        if key == "label":
            col = self.label_column(self.hook, n)
            order = sorted(range(n), key=lambda i: (col[i] == "", str(col[i]).lower(), i))
        elif key in state.TEXT_COLUMNS:
            col = table.get(key, np.array([""] * n, dtype=object))
            order = sorted(range(n), key=lambda i: (str(col[i]).lower(), i))
        else:
            vals = np.asarray(table[key], dtype=np.float64)
            vals = np.where(np.isnan(vals), np.inf, vals)
            order = np.lexsort((np.arange(n), vals))
        ranks = np.empty(n, dtype=np.int64)
        ranks[np.asarray(order, dtype=np.int64)] = np.arange(n)
        return ranks

    def visible_order(self) -> np.ndarray:
        """Neuron numbers in the table's visible order (filter + sort): what J/K step through."""
        table = self.table()
        if table is None:
            return np.zeros(0, dtype=np.int64)
        ranks = self.sort_ranks(self.sort_key)
        rows = np.argsort(ranks)
        if self.sort_desc:
            rows = rows[::-1]
        if self.mask is not None and len(self.mask) == len(rows):
            rows = rows[self.mask[rows]]
        return np.asarray(table["neuron"])[rows]

    # ---- neurons ------------------------------------------------------------------------------------

    def select(self, neuron: int, hook: str | None = None, record: bool = True) -> None:
        """Show a neuron: emit neuronChanged at once, then pageReady from the cache or a worker."""
        if self.store is None:
            return
        if hook is not None and hook != self.hook:
            self.set_hook(hook, neuron=neuron)
            return
        if self.hook is None:
            return
        n = int(self.store.d_mlp)
        if not 0 <= int(neuron) < n:
            self.errorRaised.emit("No such neuron", f"neuron {neuron} does not exist in {self.hook}: choose 0-{n - 1}")
            return
        ref = NeuronRef(self.hook, int(neuron))
        self.ref = ref
        if record:
            self.history.visit(ref)
            self.historyChanged.emit(self.history.can_back(), self.history.can_forward())
        self.neuronChanged.emit(ref)
        key = (str(self.store.path), ref.hook, ref.neuron)
        page = self.pages.get(key)
        if page is not None:
            self.tasks.requests.new("neuron").cancelled.set()  # supersede any slower load in flight
            self._show_page(page)
            return
        store, pages = self.store, self.pages

        def work(req):
            page = state.load_page(store, ref, req)
            pages.put(key, page)
            return page

        self.tasks.submit("neuron", work, self._show_page, lambda e, tb: self._error(f"Cannot show {ref.label()}", e, tb))

    def _show_page(self, page: state.NeuronPage) -> None:
        if page.ref != self.ref:
            return
        self.page = page
        self.pageReady.emit(page)
        if self.prefetch:
            self._prefetch_neighbours()

    def _prefetch_neighbours(self) -> None:
        """Read the next and previous neuron in table order in the background, so J/K feel instant."""
        if self.ref is None or self.store is None:
            return
        order = self.visible_order()
        refs = [NeuronRef(self.hook, state.step_neuron(order, self.ref.neuron, s, int(self.store.d_mlp))) for s in (1, -1)]
        store, pages = self.store, self.pages
        todo = [r for r in refs if r != self.ref and pages.get((str(store.path), r.hook, r.neuron)) is None]
        if not todo:
            return

        def work(req):
            for r in todo:
                req.check()
                pages.put((str(store.path), r.hook, r.neuron), state.load_page(store, r, req))

        self.tasks.submit("prefetch", work, None, lambda e, tb: None)

    def request_passage(self, ref: NeuronRef, position: int, on_done) -> None:
        """Read the whole recorded context of ``ref``'s firing at ``position`` (and its greyed document)
        in a worker; ``on_done(MergedSnippet)`` runs on the GUI thread (a newer request supersedes it)."""
        if self.store is None:
            return
        store = self.store
        self.tasks.submit("passage", lambda req: state.load_passage(store, ref, position), on_done,
                          lambda e, tb: self._error("Cannot read this snippet's context", e, tb))

    def step_neuron(self, step: int) -> None:
        if self.store is None or self.hook is None:
            return
        cur = self.ref.neuron if self.ref else None
        self.select(state.step_neuron(self.visible_order(), cur, step, int(self.store.d_mlp)))

    def step_layer(self, step: int) -> None:
        if self.store is None or self.hook is None:
            return
        self.set_hook(state.step_layer(self.store.hooks, self.hook, step))

    def toggle_ln_side(self) -> None:
        """SoLU-LN: jump between hook_mid and hook_post for the same neuron."""
        if self.store is None or self.hook is None:
            return
        other = state.paired_hook(self.store.hooks, self.hook)
        if other:
            self.set_hook(other)

    def back(self) -> None:
        ref = self.history.back()
        self._go(ref)

    def forward(self) -> None:
        ref = self.history.forward()
        self._go(ref)

    def _go(self, ref: NeuronRef | None) -> None:
        self.historyChanged.emit(self.history.can_back(), self.history.can_forward())
        if ref is None:
            return
        if ref.hook != self.hook:
            self.hook = None  # force set_hook to treat it as a change
            self.set_hook(ref.hook, neuron=ref.neuron)
        else:
            self.select(ref.neuron, record=False)

    def toggle_bookmark(self) -> bool:
        if self.ref is None:
            return False
        on = self.bookmarks.toggle(self.ref)
        self.bookmarksChanged.emit()
        if self.filter.bookmarked_only:
            self._apply_filter()
        return on

    # ---- try your text --------------------------------------------------------------------------------

    def checkpoint_dir(self) -> Path | None:
        if self.checkpoint_override is not None:
            return self.checkpoint_override
        if self.store is None:
            return None
        p = self.store.manifest.get("checkpoint_path")
        return Path(p) if p else None

    def set_checkpoint(self, path: str | Path) -> None:
        self.checkpoint_override = Path(path)
        self._live = None
        if self.live_text:
            self.run_live(self.live_text)

    def run_live(self, text: str) -> None:
        """Run the model on ``text`` in a worker for the current neuron (newest text wins)."""
        self.live_text = text
        if self.ref is None:
            return
        ckpt = self.checkpoint_dir()
        if ckpt is None:
            self.liveStateChanged.emit("no checkpoint: this store does not say which model recorded it")
            return
        ref = self.ref
        if self._live is None or self._live.checkpoint_dir != ckpt:
            try:
                from solu_core.live import LiveModel  # torch is imported only when someone types
            except ImportError as e:
                self.liveStateChanged.emit(f"try-your-text needs torch: pip install 'neurobrowse[model]' ({e})")
                return
            self._live = LiveModel(ckpt)
        live = self._live
        if not live.loaded:
            self.liveStateChanged.emit(f"loading the model from {ckpt} ...")

        def work(req):
            return live.run(text, ref.hook, ref.neuron)

        def done(result):
            self.liveStateChanged.emit("ready")
            self.liveReady.emit(result)

        def failed(exc, tb):
            self.liveStateChanged.emit(f"model unavailable: {exc}")
            self._error("Try-your-text: model unavailable", exc, tb)

        self.tasks.submit("live", work, done, failed)

    def _on_failed(self, kind: str, exc: BaseException, tb: str) -> None:
        self._error(f"{kind} failed", exc, tb)

    def _error(self, title: str, exc: BaseException, tb: str) -> None:
        if isinstance(exc, NeurobrowseError):
            self.errorRaised.emit(title, str(exc))
        else:
            last = tb.strip().splitlines()[-3:] if tb else []
            self.errorRaised.emit(title, f"{type(exc).__name__}: {exc}\n\n" + "\n".join(last))

    def shutdown(self) -> None:
        self.tasks.shutdown()
