"""The browsing model of one open store, without Qt.

``Browser`` owns everything a browser window shows: the store, the current hook and neuron, the
loaded page, the neuron tables, the filter and sort of the table, bookmarks, history, the labels (the
store's ``LabelModel`` and the label text per neuron) and the try-your-text model. Views call its
methods and subscribe to ``browser.events``; every store, label-database or model access runs
through its runner (off the GUI thread in the app), and results come back as events:

  storeOpened(store)          a store was opened (hooks, manifest and ``indexed`` are known)
  labelsReady(model | None)   the store's LabelModel (None: labels unavailable, see errorRaised)
  statusChanged(str)          one line for the status bar
  hookChanged(str)            the current hook (layer) changed
  tableReady(str, dict)       the neuron table now shown: hook, columns (sent on every hook switch)
  filterApplied(mask)         bool [neuron] rows of the current table passing the filter and search
  sortChanged(str, bool)      table sort column, descending
  neuronChanged(NeuronRef)    the neuron selected (its page may still be loading)
  pageReady(NeuronPage)       the page of the current neuron
  historyChanged(bool, bool)  can go back, can go forward
  bookmarksChanged()
  labelsChanged(str)          label texts of a hook changed
  liveReady(LiveResult)       try-your-text result for the current neuron
  liveStateChanged(str)       "ready", "loading ...", or what is missing
  errorRaised(str, str)       title, message (what is wrong and how to fix it)
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np

from neurobrowse.browsing.navigation import Bookmarks, History, paired_hook, step_layer, step_neuron
from neurobrowse.browsing.filtering import ContextSearch, TEXT_COLUMNS, apply_filter, parse_filter, search_marker
from neurobrowse.browsing.pages import NeuronPage, PageCache, load_page, load_passage
from neurobrowse.browsing.status_lines import store_problems, store_status
from neurobrowse.browsing.events import Events
from neurobrowse.browsing.runner import InlineRunner, Runner
from neurobrowse.browsing.navigation import NeuronRef
from neurobrowse.browsing.filtering import TableFilter
from store.errors import NeurobrowseError

EVENTS = ("storeOpened", "labelsReady", "statusChanged", "hookChanged", "tableReady", "filterApplied",
          "sortChanged", "neuronChanged", "pageReady", "historyChanged", "bookmarksChanged", "labelsChanged",
          "liveReady", "liveStateChanged", "errorRaised")


def _open(path: Path, with_labels: bool):
    """Everything opening a store reads, in one worker call: the store, its problems, which hooks are
    indexed, and the label database with the store's current labels."""
    from store.format.reader import Store  # imported lazily: keeps app start-up light

    store = Store.open(path)
    problems = store_problems(store)
    indexed = {h for h in store.hooks if store.is_indexed(h)}
    label_model, label_texts, label_error = None, {}, None
    if with_labels:
        from neurobrowse.labeling import LabelModel, label_text
        from store.labels.db import LabelDB

        try:
            db = LabelDB()
            label_model = LabelModel(db, store.run_uuid, store=store)
            for (hook, neuron), lab in db.snapshot(store.run_uuid).items():
                label_texts.setdefault(hook, {})[int(neuron)] = label_text(lab)
        except NeurobrowseError as e:
            label_model, label_error = None, str(e)
    return store, problems, indexed, label_model, label_texts, label_error


def firing_token_columns(store, hook: str) -> dict[str, np.ndarray]:
    """The table's "Top token": the token most of a neuron's top-k firings are on (ties: the stronger firing
    first), with how many of them (``top_token_count`` of ``top_token_k``). The index's own top token (highest
    mean activation among tokens seen a few times) favours rare tokens; this is what the snippets show."""
    try:
        before, _after = store.index_window(hook)
        ids = np.asarray(store.index_array(hook, "top_context_tokens")[:, :, before])  # [neuron, k]
    except (NeurobrowseError, KeyError, IndexError, ValueError):
        return {}
    n, k = ids.shape
    best = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    for i in range(n):
        row = ids[i][ids[i] >= 0]
        if row.size:
            vals, first, counts = np.unique(row, return_index=True, return_counts=True)
            j = np.lexsort((first, -counts))[0]  # most firings, then the earliest (strongest) one
            best[i], count[i] = vals[j], counts[j]
    k_valid = (ids >= 0).sum(axis=1)
    return {"top_token": np.array(store.token_strings(best), dtype=object), "top_token_id": best.astype(np.int32),
            "top_token_count": count, "top_token_k": k_valid}


class Browser:
    """One store's browsing session. ``runner`` runs its disk and model work (``InlineRunner`` by default:
    everything at once on the calling thread)."""

    def __init__(self, runner: Runner | None = None, prefetch: bool = True, labels: bool = True) -> None:
        self.tasks: Runner = runner or InlineRunner()
        self.events = Events(*EVENTS)
        self.with_labels = labels
        self.store = None
        self.indexed: set[str] = set()  # hooks with a complete index, read when the store was opened
        self.hook: str | None = None
        self.ref: NeuronRef | None = None
        self.page: NeuronPage | None = None
        self.tables: dict[str, dict[str, np.ndarray]] = {}
        self.label_model = None  # neurobrowse.labeling.LabelModel of the open store
        self.labels: dict[str, dict[int, str]] = {}  # hook -> neuron -> label text
        self._unsubscribe_labels = None
        self.searches: dict[str, ContextSearch] = {}
        self.filter = TableFilter()
        self.mask: np.ndarray | None = None
        self.mask_hook: str | None = None  # the hook ``mask`` belongs to
        self.sort_key, self.sort_desc = "neuron", False
        self.history = History()
        self.bookmarks = Bookmarks()
        self.pages = PageCache()
        self.size_bytes: int | None = None
        self.prefetch = prefetch
        self.live_text = ""
        self._live = None  # solu_core.live.LiveModel, created on first use
        self.checkpoint_override: Path | None = None
        self._pending_select: int | None = None

    # ---- opening ------------------------------------------------------------------------------------

    def open_store(self, path: str | Path, hook: str | None = None, neuron: int | None = None) -> None:
        """Open in a worker; then storeOpened, labelsReady, and the first indexed hook's table and page."""
        path = Path(path)
        self.events.statusChanged.emit(f"opening {path} ...")
        with_labels = self.with_labels

        def work(req):
            return _open(path, with_labels)

        def done(result):
            store, problems, indexed, label_model, label_texts, label_error = result
            self._set_store(store, indexed, label_model, label_texts)
            for p in problems:
                self.events.errorRaised.emit("Store not ready", p)
            if label_error is not None:
                self.events.errorRaised.emit("Labels unavailable",
                                             f"{label_error}\n\nBrowsing works; labels are off for this window.")
            first = hook if hook in store.hooks else next(
                (h for h in store.hooks if h in indexed), store.hooks[0] if store.hooks else None)
            if first is not None:
                self.set_hook(first, neuron=neuron if neuron is not None else 0)

        self.tasks.submit("open", work, done, lambda e, tb: self._error("Cannot open store", e, tb))

    def _set_store(self, store, indexed: set[str], label_model, label_texts: dict) -> None:
        self._close_labels()
        self.store = store
        self.indexed = set(indexed)
        self.tables.clear()
        self.searches.clear()
        self.pages.clear()
        self.history = History()
        self.events.historyChanged.emit(False, False)
        self.ref, self.page, self.hook, self.mask, self.mask_hook = None, None, None, None, None
        self._live = None
        self.size_bytes = None
        self.label_model = label_model
        self.labels = {h: dict(v) for h, v in label_texts.items()}
        if label_model is not None:
            self._unsubscribe_labels = label_model.subscribe(self._on_label_change)
        self.events.storeOpened.emit(store)
        self.events.labelsReady.emit(label_model)
        self._emit_status()
        self.tasks.submit("size", lambda req: store.size_on_disk(), self._on_size, lambda e, tb: None)

    def _on_size(self, n: int) -> None:
        self.size_bytes = int(n)
        self._emit_status()

    def _emit_status(self) -> None:
        if self.store is not None:
            self.events.statusChanged.emit(store_status(self.store, self.size_bytes, self.indexed))

    # ---- hooks and the table ------------------------------------------------------------------------

    def set_hook(self, hook: str, neuron: int | None = None) -> None:
        """Show ``hook``: its table (tableReady, also when it was loaded before), filter, and a neuron page."""
        if self.store is None or hook not in self.store.hooks:
            return
        changed = hook != self.hook
        self.hook = hook
        if changed:
            self.events.hookChanged.emit(hook)
        target = neuron if neuron is not None else (self.ref.neuron if self.ref else 0)
        if hook in self.tables:
            if changed:
                self.events.tableReady.emit(hook, self.tables[hook])
            self._apply_filter()
            self.select(target)
            return
        if hook not in self.indexed:
            if not self.store.complete:
                return  # the "incomplete recording" notice on open already says what to run, once
            self.events.errorRaised.emit("Not indexed", f"{hook} in {self.store.path} is not indexed yet; "
                                         f"run `neurobrowse index {self.store.path}` and reopen the store.")
            return
        self._pending_select = target
        store = self.store

        def work(req):
            table = dict(store.neuron_table(hook))
            req.check()
            table.update(firing_token_columns(store, hook))
            return table

        def done(table):
            self.tables[hook] = {k: np.asarray(v) for k, v in table.items()}
            # Everything alive now (Qt wrappers, the store's token strings and caches, this table) lives
            # as long as the window: move it out of the cyclic GC's reach, so full collections do not
            # scan it all and stall the event loop (benchmarks/bench_app.py); later garbage is still collected.
            gc.freeze()
            if hook != self.hook:
                return
            self.events.tableReady.emit(hook, self.tables[hook])
            self._apply_filter()
            sel, self._pending_select = self._pending_select, None
            self.select(sel if sel is not None else 0)

        self.tasks.submit("table", work, done, lambda e, tb: self._error("Cannot read the neuron table", e, tb))

    def table(self) -> dict[str, np.ndarray] | None:
        return self.tables.get(self.hook) if self.hook else None

    def label_column(self, hook: str, n: int) -> np.ndarray:
        lab = self.labels.get(hook, {})
        return np.array([lab.get(i, "") for i in range(n)], dtype=object)

    # ---- labels -------------------------------------------------------------------------------------

    def set_labels(self, hook: str, labels: dict[int, str]) -> None:
        """Replace the label texts of a hook (a table column, filterable with `label ~ ...`)."""
        self.labels[hook] = dict(labels)
        self._labels_changed(hook)

    def _on_label_change(self, change) -> None:
        """A label was set, cleared or undone through the LabelModel (the label panel's keys)."""
        from neurobrowse.labeling import label_text

        if change.kind not in ("set", "cleared", "undo") or change.hook is None:
            return
        texts = self.labels.setdefault(change.hook, {})
        if change.label is None:
            texts.pop(int(change.neuron), None)
        else:
            texts[int(change.neuron)] = label_text(change.label)
        self._labels_changed(change.hook)

    def _labels_changed(self, hook: str) -> None:
        self.events.labelsChanged.emit(hook)
        if hook == self.hook:
            self._apply_filter()

    def _close_labels(self) -> None:
        if self._unsubscribe_labels is not None:
            self._unsubscribe_labels()
            self._unsubscribe_labels = None
        if self.label_model is not None:
            self.label_model.db.close()
            self.label_model = None

    # ---- filter, search, sort ---------------------------------------------------------------------

    def set_filter(self, flt: TableFilter) -> None:
        """Validate now (a bad expression is an errorRaised), search contexts in a worker, then filterApplied."""
        try:
            parse_filter(flt.expression)
        except NeurobrowseError as e:
            self.events.errorRaised.emit("Bad filter", str(e))
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
        mask = apply_filter(cols, parse_filter(flt.expression))
        if flt.bookmarked_only:
            marked = {r.neuron for r in self.bookmarks if r.hook == hook}
            mask &= np.isin(table["neuron"], list(marked))
        if not flt.search:
            self._set_mask(hook, mask)
            return
        store, searches = self.store, self.searches

        def work(req):
            if hook not in searches:
                searches[hook] = ContextSearch.from_store(store, hook, req)
            req.check()
            return searches[hook].search(flt.search, flt.search_mode)

        def done(found):
            if hook == self.hook:
                self._set_mask(hook, mask & found)

        self.tasks.submit("search", work, done, lambda e, tb: self._error("Search failed", e, tb))

    def search_highlights(self, snippets) -> dict[int, list[tuple[int, int]]]:
        """The table search's matches in ``snippets`` (MergedSnippets): {snippet index: [(lo, hi) token
        ranges]}, as the snippet views draw them; empty without a search."""
        marker = search_marker(self.filter.search, self.filter.search_mode)
        if marker is None:
            return {}
        out = {}
        for i, sn in enumerate(snippets):
            hits = sorted(marker(sn.tokens))
            if hits:
                out[i] = [(t, t + 1) for t in hits]
        return out

    def _set_mask(self, hook: str, mask: np.ndarray) -> None:
        self.mask, self.mask_hook = mask, hook
        self.events.filterApplied.emit(mask)

    def set_sort(self, key: str, descending: bool) -> None:
        if (key, descending) != (self.sort_key, self.sort_desc):
            self.sort_key, self.sort_desc = key, descending
            self.events.sortChanged.emit(key, descending)

    def sort_ranks(self, key: str) -> np.ndarray:
        """Unique rank of each row by ``key`` (ties broken by neuron number): the table's sort order."""
        table = self.table()
        if table is None:
            return np.zeros(0, dtype=np.int64)
        n = len(table["neuron"])
        if key == "label":
            col = self.label_column(self.hook, n)
            order = sorted(range(n), key=lambda i: (col[i] == "", str(col[i]).lower(), i))
        elif key in TEXT_COLUMNS:
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
        if self.mask is not None and self.mask_hook == self.hook and len(self.mask) == len(rows):
            rows = rows[self.mask[rows]]
        return np.asarray(table["neuron"])[rows]

    # ---- neurons ------------------------------------------------------------------------------------

    def select(self, neuron: int, hook: str | None = None, record: bool = True) -> None:
        """Show a neuron: neuronChanged at once, then pageReady from the cache or a worker."""
        if self.store is None:
            return
        if hook is not None and hook != self.hook:
            self.set_hook(hook, neuron=neuron)
            return
        if self.hook is None:
            return
        n = int(self.store.n_units(self.hook))
        if not 0 <= int(neuron) < n:
            self.events.errorRaised.emit("No such neuron",
                                         f"neuron {neuron} does not exist in {self.hook}: choose 0-{n - 1}")
            return
        ref = NeuronRef(self.hook, int(neuron))
        self.ref = ref
        if record:
            self.history.visit(ref)
            self.events.historyChanged.emit(self.history.can_back(), self.history.can_forward())
        if self.label_model is not None:
            try:
                self.label_model.set_neuron(ref.hook, ref.neuron)
            except NeurobrowseError as e:  # a label problem must not stop browsing
                self.events.statusChanged.emit(f"label: {e}")
        self.events.neuronChanged.emit(ref)
        key = (str(self.store.path), ref.hook, ref.neuron)
        page = self.pages.get(key)
        if page is not None:
            self.tasks.requests.new("neuron").cancelled.set()  # supersede any slower load in flight
            self._show_page(page)
            return
        store, pages = self.store, self.pages

        def work(req):
            page = load_page(store, ref, req)
            pages.put(key, page)
            return page

        self.tasks.submit("neuron", work, self._show_page,
                          lambda e, tb: self._error(f"Cannot show {ref.label()}", e, tb))

    def _show_page(self, page: NeuronPage) -> None:
        if page.ref != self.ref:
            return
        self.page = page
        self.events.pageReady.emit(page)
        if self.prefetch:
            self._prefetch_neighbours()

    def _prefetch_neighbours(self) -> None:
        """Read the next and previous neuron in table order in the background, so J/K feel instant."""
        if self.ref is None or self.store is None:
            return
        order = self.visible_order()
        n = int(self.store.n_units(self.hook))
        refs = [NeuronRef(self.hook, step_neuron(order, self.ref.neuron, s, n)) for s in (1, -1)]
        store, pages = self.store, self.pages
        todo = [r for r in refs if r != self.ref and pages.get((str(store.path), r.hook, r.neuron)) is None]
        if not todo:
            return

        def work(req):
            for r in todo:
                req.check()
                pages.put((str(store.path), r.hook, r.neuron), load_page(store, r, req))

        self.tasks.submit("prefetch", work, None, lambda e, tb: None)

    def request_passage(self, ref: NeuronRef, position: int, on_done) -> None:
        """Read the whole recorded context of ``ref``'s firing at ``position`` (and its greyed document)
        in a worker; ``on_done(MergedSnippet)`` runs on the GUI thread (a newer request supersedes it)."""
        if self.store is None:
            return
        store = self.store
        self.tasks.submit("passage", lambda req: load_passage(store, ref, position), on_done,
                          lambda e, tb: self._error("Cannot read this snippet's context", e, tb))

    def step_neuron(self, step: int) -> None:
        """J / K: the next / previous neuron in the table's visible order (filter and sort)."""
        if self.store is None or self.hook is None:
            return
        cur = self.ref.neuron if self.ref else None
        self.select(step_neuron(self.visible_order(), cur, step, int(self.store.n_units(self.hook))))

    def step_layer(self, step: int) -> None:
        if self.store is None or self.hook is None:
            return
        self.set_hook(step_layer(self.store.hooks, self.hook, step))

    def toggle_ln_side(self) -> None:
        """SoLU-LN: jump between hook_mid and hook_post for the same neuron."""
        if self.store is None or self.hook is None:
            return
        other = paired_hook(self.store.hooks, self.hook)
        if other:
            self.set_hook(other)

    def back(self) -> None:
        self._go(self.history.back())

    def forward(self) -> None:
        self._go(self.history.forward())

    def _go(self, ref: NeuronRef | None) -> None:
        self.events.historyChanged.emit(self.history.can_back(), self.history.can_forward())
        if ref is None:
            return
        if ref.hook != self.hook:
            self.set_hook(ref.hook, neuron=ref.neuron)
        else:
            self.select(ref.neuron, record=False)

    # ---- bookmarks ----------------------------------------------------------------------------------

    def set_bookmarks(self, bookmarks: Bookmarks) -> None:
        """Bookmarks of the open store (the app keeps them per store run uuid in its settings)."""
        self.bookmarks = bookmarks
        self._bookmarks_changed()

    def toggle_bookmark(self) -> bool:
        if self.ref is None:
            return False
        on = self.bookmarks.toggle(self.ref)
        self._bookmarks_changed()
        return on

    def _bookmarks_changed(self) -> None:
        self.events.bookmarksChanged.emit()
        if self.filter.bookmarked_only:
            self._apply_filter()

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
            self.events.liveStateChanged.emit("no checkpoint: this store does not say which model recorded it")
            return
        ref = self.ref
        if self._live is None or self._live.checkpoint_dir != ckpt:
            try:
                from solu_core.live import LiveModel  # torch is imported only when someone types
            except ImportError as e:
                self.events.liveStateChanged.emit(f"try-your-text needs torch: pip install 'neurobrowse[model]' ({e})")
                return
            self._live = LiveModel(ckpt)
        live = self._live
        if not live.loaded:
            self.events.liveStateChanged.emit(f"loading the model from {ckpt} ...")

        def work(req):
            return live.run(text, ref.hook, ref.neuron)

        def done(result):
            self.events.liveStateChanged.emit("ready")
            self.events.liveReady.emit(result)

        def failed(exc, tb):
            self.events.liveStateChanged.emit(f"model unavailable: {exc}")
            self._error("Try-your-text: model unavailable", exc, tb)

        self.tasks.submit("live", work, done, failed)

    # ---- errors and closing ---------------------------------------------------------------------------

    def _error(self, title: str, exc: BaseException, tb: str) -> None:
        if isinstance(exc, NeurobrowseError):
            self.events.errorRaised.emit(title, str(exc))
        else:
            last = tb.strip().splitlines()[-3:] if tb else []
            self.events.errorRaised.emit(title, f"{type(exc).__name__}: {exc}\n\n" + "\n".join(last))

    def shutdown(self) -> None:
        """Stop the workers, then close the label database."""
        self.tasks.shutdown()
        self._close_labels()
