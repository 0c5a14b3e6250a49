"""Navigation: a neuron reference, back/forward history, bookmarks, stepping through neurons and layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence
import numpy as np

from store.schema import hook_name, parse_hook_name


@dataclass(frozen=True)
class NeuronRef:
    hook: str  # e.g. "blocks.0.mlp.hook_post"
    neuron: int

    @property
    def layer(self) -> int:
        return parse_hook_name(self.hook)[0]

    def label(self) -> str:
        return f"L{self.layer} N{self.neuron} ({parse_hook_name(self.hook)[1]})"


class History:
    """Browser-style back/forward over visited neurons. Re-visiting the current neuron is not a step."""

    def __init__(self, limit: int = 500) -> None:
        self._items: list[NeuronRef] = []
        self._pos = -1
        self._limit = limit

    @property
    def current(self) -> NeuronRef | None:
        return self._items[self._pos] if self._pos >= 0 else None

    def visit(self, ref: NeuronRef) -> None:
        if self.current == ref:
            return
        del self._items[self._pos + 1 :]  # a new visit drops the forward branch
        self._items.append(ref)
        if len(self._items) > self._limit:
            del self._items[0]
        self._pos = len(self._items) - 1

    def can_back(self) -> bool:
        return self._pos > 0

    def can_forward(self) -> bool:
        return self._pos < len(self._items) - 1

    def back(self) -> NeuronRef | None:
        if not self.can_back():
            return None
        self._pos -= 1
        return self.current

    def forward(self) -> NeuronRef | None:
        if not self.can_forward():
            return None
        self._pos += 1
        return self.current


class Bookmarks:
    """Bookmarked neurons of one store (keyed by the store's run uuid by whoever persists them)."""

    def __init__(self, items: Iterable[NeuronRef] = ()) -> None:
        self._items: list[NeuronRef] = list(dict.fromkeys(items))

    def __contains__(self, ref: NeuronRef) -> bool:
        return ref in self._items

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def toggle(self, ref: NeuronRef) -> bool:
        """Add or remove; returns True when the neuron is now bookmarked."""
        if ref in self._items:
            self._items.remove(ref)
            return False
        self._items.append(ref)
        return True

    def to_list(self) -> list[list]:
        return [[r.hook, r.neuron] for r in self._items]

    @classmethod
    def from_list(cls, items: Iterable) -> "Bookmarks":
        out = []
        for it in items or ():
            try:
                out.append(NeuronRef(str(it[0]), int(it[1])))
            except (TypeError, ValueError, IndexError):
                continue  # a damaged settings entry is skipped, not fatal
        return cls(out)


def step_neuron(order: Sequence[int] | np.ndarray, current: int | None, step: int, n_neurons: int) -> int:
    """The next/previous neuron: along ``order`` (the table's visible order) when ``current`` is in it,
    else by number. Stops at the ends rather than wrapping (a researcher notices the end)."""
    order = np.asarray(order)
    if current is not None and len(order):
        hits = np.flatnonzero(order == current)
        if len(hits):
            i = int(np.clip(hits[0] + step, 0, len(order) - 1))
            return int(order[i])
        if step > 0:
            later = order[order > current]
            return int(later.min()) if len(later) else int(order.max())
        earlier = order[order < current]
        return int(earlier.max()) if len(earlier) else int(order.min())
    base = 0 if current is None else current + step
    return int(np.clip(base, 0, max(n_neurons - 1, 0)))


def step_layer(hooks: Sequence[str], current: str, step: int) -> str:
    """The same hook kind one layer up or down (hook_post stays hook_post, a dictionary's features the same
    dictionary over the same kind); clamps at the ends."""
    layer, kind = parse_hook_name(current)
    same_kind = sorted((h for h in hooks if parse_hook_name(h)[1] == kind), key=lambda h: parse_hook_name(h)[0])
    if not same_kind:
        return current
    layers = [parse_hook_name(h)[0] for h in same_kind]
    idx = min(range(len(layers)), key=lambda i: abs(layers[i] - layer))
    return same_kind[int(np.clip(idx + step, 0, len(same_kind) - 1))]


def paired_hook(hooks: Sequence[str], hook: str) -> str | None:
    """For SoLU-LN: hook_mid <-> hook_post of the same layer, when the store has both."""
    layer, kind = parse_hook_name(hook)
    other = {"hook_mid": "hook_post", "hook_post": "hook_mid"}.get(kind)
    cand = hook_name(layer, other) if other else None
    return cand if cand in hooks else None
