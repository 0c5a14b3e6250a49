"""Narrowing the neuron table: the table's columns, the filter language (``kurtosis > 10, density < 0.05``)
and the search by a token or a regex over top contexts (``ContextSearch``, ``search_marker``).
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from typing import Callable, Sequence
import numpy as np
from store.measures import columns
from store.errors import NeurobrowseError
from neurobrowse.browsing.cancellation import Request


# The neuron table's columns, in order: (key, header, format spec): the registry's table columns, with the
# label column (from the label database) right after the top token, so it stays in view at the default width.
TABLE_COLUMNS: list[tuple[str, str, str]] = [(c.name, c.header, c.fmt) for c in columns.COLUMNS if c.in_table]


TABLE_COLUMNS.insert([k for k, _, _ in TABLE_COLUMNS].index("top_token") + 1, ("label", "Label", ""))


NUMERIC_COLUMNS = columns.NUMERIC


TEXT_COLUMNS = (*columns.TEXT, "label")


class FilterError(NeurobrowseError):
    """A filter expression that cannot be parsed; the message says which part and the accepted form."""


@dataclass(frozen=True)
class Clause:
    column: str
    op: str  # one of < <= > >= == != ~ (substring / regex for text columns)
    value: float | str


_CLAUSE = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|==|!=|<|>|=|~)\s*(.+?)\s*$")


def parse_filter(expr: str) -> list[Clause]:
    """``"kurtosis > 10, density < 0.05 and label ~ quote"`` -> clauses (all must hold).

    Numeric columns take < <= > >= = !=; text columns (top_token, label) take ``~`` (regex, case
    insensitive) or ``=`` (exact)."""
    clauses: list[Clause] = []
    for part in re.split(r",|\band\b|&&", expr or ""):
        if not part.strip():
            continue
        m = _CLAUSE.match(part)
        if not m:
            raise FilterError(f"cannot read filter {part.strip()!r}; "
                              "write e.g. 'kurtosis > 10, density < 0.05, label ~ quote'")
        col, op, raw = m.group(1).lower(), m.group(2), m.group(3).strip().strip("'\"")
        col = columns.ALIASES.get(col, col)
        op = "==" if op == "=" else op
        if col in NUMERIC_COLUMNS:
            if op == "~":
                raise FilterError(f"'~' works on text columns ({', '.join(TEXT_COLUMNS)}), not on {col!r}")
            try:
                value: float | str = float(raw)
            except ValueError:
                raise FilterError(f"{col} {op} {raw!r}: {raw!r} is not a number") from None
        elif col in TEXT_COLUMNS:
            if op not in ("~", "==", "!="):
                raise FilterError(f"text column {col!r} takes '~' (regex), '=' or '!=', not {op!r}")
            if op == "~":
                try:
                    re.compile(raw)
                except re.error as e:
                    raise FilterError(f"bad regex {raw!r} in filter: {e}") from None
            value = raw
        else:
            known = ", ".join(NUMERIC_COLUMNS + TEXT_COLUMNS)
            raise FilterError(f"unknown column {col!r} in filter; columns: {known}")
        clauses.append(Clause(col, op, value))
    return clauses


_NUM_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal,
}


def apply_filter(table: dict[str, np.ndarray], clauses: Sequence[Clause]) -> np.ndarray:
    """Boolean mask [neuron] of rows where every clause holds (NaN fails numeric clauses)."""
    n = len(table["neuron"])
    mask = np.ones(n, dtype=bool)
    for c in clauses:
        col = table.get(c.column)
        if col is None:
            col = np.array([""] * n, dtype=object) if c.column in TEXT_COLUMNS else np.full(n, np.nan)
        if c.column in NUMERIC_COLUMNS:
            with np.errstate(invalid="ignore"):
                mask &= _NUM_OPS[c.op](np.asarray(col, dtype=np.float64), float(c.value))
        else:
            strs = [str(x) if x is not None else "" for x in col]
            if c.op == "~":
                rx = re.compile(str(c.value), re.IGNORECASE)
                hit = np.fromiter((bool(rx.search(s)) for s in strs), bool, n)
            else:
                hit = np.fromiter((s == c.value for s in strs), bool, n)
            mask &= hit if c.op != "!=" else ~hit
    return mask


class ContextSearch:
    """Search a hook's top-activating contexts: which neurons fire on a token or on text matching a regex.

    ``mode="token"``: the pattern is matched (case-insensitively, as a regex, against the whole token
    text with surrounding spaces stripped) against the vocabulary, then neurons whose top contexts
    hold one of those tokens *at a firing position* are kept. ``mode="regex"``: the regex is run over
    each neuron's top-context text (windows joined by newlines). Built once per hook in a worker.
    """

    def __init__(self, context_tokens: np.ndarray, centers: int, vocab: Sequence[str]) -> None:
        self.context_tokens = np.asarray(context_tokens)  # [neuron, k, window] int32, -1 = padding
        self.center = centers  # index of the firing token in each window
        self.vocab = np.asarray(list(vocab) + [""], dtype=object)  # id -1 maps to the last entry: ""
        self._texts: list[str] | None = None

    @classmethod
    def from_store(cls, store, hook: str, req: Request | None = None) -> "ContextSearch":
        from store.measures.snippets import context_slots

        toks = np.asarray(store.index_array(hook, "top_context_tokens")[...])
        pos = np.asarray(store.index_array(hook, "top_positions")[...])
        if req:
            req.check()
        before, _after = store.index_window(hook)
        # only the text the model saw with each firing (windows also hold greyed text outside its context)
        toks = np.where(context_slots(pos, before, toks.shape[-1], store.context_len), toks, -1)
        vocab = store.token_strings(list(range(int(store.model_config["d_vocab"]))))
        return cls(toks, before, vocab)

    def texts(self) -> list[str]:
        if self._texts is None:
            strs = self.vocab[self.context_tokens]  # [neuron, k, window] of str
            self._texts = ["\n".join("".join(w) for w in neuron) for neuron in strs]
        return self._texts

    def search(self, pattern: str, mode: str = "token") -> np.ndarray:
        """Boolean mask [neuron]. Raises FilterError on a bad regex."""
        if not pattern:
            return np.ones(self.context_tokens.shape[0], dtype=bool)
        rx = _search_regex(pattern, mode)
        if mode == "regex":
            return np.fromiter((bool(rx.search(t)) for t in self.texts()), bool, self.context_tokens.shape[0])
        ids = [i for i, s in enumerate(self.vocab[:-1]) if rx.match(s)]
        if not ids:
            return np.zeros(self.context_tokens.shape[0], dtype=bool)
        firing = self.context_tokens[:, :, self.center]  # [neuron, k]
        return np.isin(firing, ids).any(axis=1)


def _search_regex(pattern: str, mode: str) -> re.Pattern:
    """token mode: the whole token text (spaces around it stripped); regex mode: anywhere in the text."""
    try:
        return re.compile(pattern if mode == "regex" else rf"^\s*(?:{pattern})\s*$", re.IGNORECASE)
    except re.error as e:
        raise FilterError(f"bad search regex {pattern!r}: {e}") from None


def search_marker(pattern: str, mode: str = "token") -> Callable[[Sequence[str]], set[int]] | None:
    """Which tokens of a snippet a context search matches, to mark them on the page: in token mode the
    tokens ``ContextSearch`` matches, in regex mode every token a match in the snippet's text overlaps.
    None without a (valid) pattern."""
    if not pattern:
        return None
    try:
        rx = _search_regex(pattern, mode)
    except FilterError:
        return None
    if mode != "regex":
        return lambda tokens: {i for i, t in enumerate(tokens) if rx.match(t)}

    def overlapping(tokens: Sequence[str]) -> set[int]:
        ends = list(itertools.accumulate(len(t) for t in tokens))
        out: set[int] = set()
        for m in rx.finditer("".join(tokens)):
            if m.end() > m.start():
                first = bisect.bisect_right(ends, m.start())
                last = bisect.bisect_left(ends, m.end())
                out.update(range(first, min(last, len(tokens) - 1) + 1))
        return out

    return overlapping


@dataclass
class TableFilter:
    expression: str = ""  # column clauses, see parse_filter
    search: str = ""  # token or regex over top contexts
    search_mode: str = "token"  # "token" | "regex"
    bookmarked_only: bool = False
