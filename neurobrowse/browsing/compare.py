"""The browsing model of a comparison window, without Qt: two ``Browser`` sides and the population
comparison of their stores (``neurobrowse.compare.compare_stores``), computed in a worker.

Events: ``ready(neurobrowse.compare.Comparison)``, ``errorRaised(title, message)``.
"""

from __future__ import annotations

from pathlib import Path

from neurobrowse import compare as population
from neurobrowse.browsing.browser import Browser
from neurobrowse.browsing.events import Events
from neurobrowse.browsing.runner import InlineRunner, Runner
from store.errors import NeurobrowseError


class CompareBrowser:
    """Two stores side by side (the compare window's model). ``sides`` are the two Browsers; ``comparison``
    the computed population comparison (``neurobrowse.compare.Comparison``)."""

    def __init__(self, sides: tuple[Browser, Browser] | None = None, runner: Runner | None = None) -> None:
        self.sides = sides or (Browser(), Browser())
        self.tasks: Runner = runner or InlineRunner()
        self.events = Events("ready", "errorRaised")
        self.comparison: population.Comparison | None = None
        self.paths: list[Path] = []

    def open_stores(self, path_a, path_b) -> None:
        """Compute the comparison in a worker and open each store on its side."""
        self.paths = [Path(path_a), Path(path_b)]
        self.compute(path_a, path_b)
        for side, p in zip(self.sides, self.paths):
            side.open_store(p)

    def compute(self, path_a, path_b) -> None:
        from store.format.reader import Store

        def work(req):
            a, b = Store.open(path_a), Store.open(path_b)
            req.check()
            return population.compare_stores(a, b, req=req)

        def failed(exc, tb):
            msg = str(exc) if isinstance(exc, NeurobrowseError) else f"{type(exc).__name__}: {exc}"
            self.events.errorRaised.emit("Cannot compare the stores", msg)

        def done(cmp):
            self.comparison = cmp
            self.events.ready.emit(cmp)

        self.tasks.submit("compare", work, done, failed)

    def same_on_other(self, i: int) -> None:
        """Show on side ``1 - i`` the neuron shown on side ``i`` (same hook when it has it). Neuron numbers
        are arbitrary across models, but stepping both populations in parallel helps."""
        ref, other = self.sides[i].ref, self.sides[1 - i]
        if ref is not None and other.store is not None:
            hook = ref.hook if ref.hook in other.store.hooks else other.hook
            other.select(min(ref.neuron, int(other.store.n_units(hook)) - 1), hook=hook)

    def shutdown(self) -> None:
        self.tasks.shutdown()
        for s in self.sides:
            s.shutdown()
