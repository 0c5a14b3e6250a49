"""The rule families of the automatic explanations (store.measures.explain): what each matches, the
per-token tables of a vocabulary they read, the features of a window position, and each rule in words.

================  ==============================================================================
family            the rule matches a position when ...
================  ==============================================================================
token             its token is exactly T
folded            its token is T up to case and a leading space
class             its token is of a class: digits, number, punctuation, bracket, quote, line
                  break, indentation, capitalised / all-caps word, word start, identifier piece,
                  operator, non-ASCII text; or it is a word piece inside a longer word
previous          the token just before is P
pair              the token is T right after P
before            token B occurs within the BEFORE_SPAN tokens before (e.g. "after ' import'")
next              the token just after is N (what the neuron predicts or sits in front of)
line              it starts a line, is the first token after indentation, or starts a context
previous class    the token just before is of a class ("after digits")
================  ==============================================================================

A feature is ``family << VALUE_BITS | value``; the search keys (neuron, feature) as ``neuron << FEAT_BITS |
feature``. Words are rendered at read time from the stored family and arguments (``describe``), e.g.
``the token ' WITH': 19/20 top firings, precision 0.91``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.measures.token_classes import CLASSES as TOKEN_CLASSES, token_table

BEFORE_SPAN = 8  # tokens before the firing searched by the "before" family

FAMILIES = ("token", "folded", "class", "previous", "pair", "before", "next", "line", "previous class")
F_TOKEN, F_FOLD, F_CLASS, F_PREV, F_PAIR, F_BEFORE, F_NEXT, F_LINE, F_PREVCLASS = range(len(FAMILIES))
LINE_RULES = ("at the start of a line", "the first token after indentation", "at the start of a context")
VALUE_BITS = 36  # a feature is family << 36 | value
FEAT_BITS = 40  # a (neuron, feature) key is neuron << 40 | feature

# the per-token classes (a token can be in several) and the one contextual class
CLASSES = TOKEN_CLASSES + ("a word piece inside a longer word",)
C_INSIDE_WORD = CLASSES.index("a word piece inside a longer word")


# ---- the vocabulary ---------------------------------------------------------------------------------
@dataclass
class Vocab:
    """Per-token tables derived from the readable vocabulary (index V is the -1 padding token)."""

    strings: list[str]
    fold: np.ndarray  # int64 [V + 1] folded-form id (-1 for padding)
    fold_names: list[str]  # folded form of each fold id
    cls: np.ndarray  # int64 [V + 1, 4] class ids, -1 padded
    class_mat: np.ndarray  # bool [V + 1, len(CLASSES)]
    starts_alpha: np.ndarray  # bool [V + 1] no leading space, first character a letter
    ends_alpha: np.ndarray  # bool [V + 1] last character a letter
    line_end: np.ndarray  # bool [V + 1] ends with a line break
    indent_end: np.ndarray  # bool [V + 1] a line break followed by spaces / tabs only
    blank: np.ndarray  # bool [V + 1] spaces / tabs only

    @property
    def size(self) -> int:
        return len(self.strings)

    @classmethod
    def build(cls, strings: list[str]) -> "Vocab":
        t = token_table(strings)
        V = len(t.classes)
        classes = np.full((V + 1, 4), -1, np.int64)
        class_mat = np.zeros((V + 1, len(CLASSES)), bool)
        line_end = np.zeros(V + 1, bool)
        blank = np.zeros(V + 1, bool)
        for i, s in enumerate(strings):
            c = t.classes[i]
            class_mat[i, c] = True
            classes[i, :len(c[:4])] = c[:4]
            line_end[i] = s.endswith("⏎")
            blank[i] = bool(s) and set(s) <= {" ", "⇥"}
        return cls(list(strings), t.fold, t.fold_names, classes, class_mat, t.starts_alpha, t.ends_alpha, line_end,
                   t.indent_end, blank)


# ---- features of positions ----------------------------------------------------------------------------
def _col(win: np.ndarray, j: int) -> np.ndarray:
    if 0 <= j < win.shape[-1]:
        return win[..., j].astype(np.int64)
    return np.full(win.shape[:-1], -1, np.int64)


def _enc(fam: int, value: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok & (value >= 0), (np.int64(fam) << VALUE_BITS) | value, -1)


def features(win: np.ndarray, j: int, voc: Vocab) -> np.ndarray:
    """int64 [..., F] the rule features of the position at column ``j`` of token windows ``win``
    [..., W] (-1 padded at context edges): each is family << 36 | value, -1 where none."""
    V = voc.size
    tok = _col(win, j)
    prev = _col(win, j - 1)
    pprev = _col(win, j - 2)
    nxt = _col(win, j + 1)
    has = tok >= 0
    t = np.where(has, tok, V)
    p = np.where(prev >= 0, prev, V)
    pp = np.where(pprev >= 0, pprev, V)
    cols = [_enc(F_TOKEN, tok, has), _enc(F_FOLD, voc.fold[t], has)]
    cols += [_enc(F_CLASS, voc.cls[t, i], has) for i in range(voc.cls.shape[1])]
    inside = has & (prev >= 0) & voc.starts_alpha[t] & voc.ends_alpha[p]
    cols.append(_enc(F_CLASS, np.full_like(tok, C_INSIDE_WORD), inside))
    cols.append(_enc(F_PREV, prev, has))
    if V * V < (1 << VALUE_BITS):
        cols.append(_enc(F_PAIR, prev * V + tok, has & (prev >= 0)))
    cols += [_enc(F_BEFORE, _col(win, i), has) for i in range(j - BEFORE_SPAN, j)]
    cols.append(_enc(F_NEXT, nxt, has))
    line = np.where(prev < 0, 2, np.where(voc.line_end[p], 0,
                    np.where(voc.indent_end[p] | (voc.blank[p] & voc.line_end[pp]), 1, -1)))
    cols.append(_enc(F_LINE, line, has))
    cols += [_enc(F_PREVCLASS, voc.cls[p, i], has & (prev >= 0)) for i in range(voc.cls.shape[1])]
    f = np.stack(cols, -1)
    # a feature counts once per position (a token repeated in the "before" span, say)
    f = np.sort(f, axis=-1)
    dup = np.zeros_like(f, bool)
    dup[..., 1:] = f[..., 1:] == f[..., :-1]
    return np.where(dup, -1, f)



# ---- words ----------------------------------------------------------------------------------------------
def _q(voc: Vocab, t: int) -> str:
    return f"'{voc.strings[t]}'" if 0 <= t < voc.size else f"⟨id {t}⟩"


def rule_words(voc: Vocab, family: int, a0: int, a1: int) -> str:
    """The rule in words, e.g. "the token ' WITH'" or "after ' import' (within 8 tokens)"."""
    if family == F_TOKEN:
        return f"the token {_q(voc, a0)}"
    if family == F_FOLD:
        name = voc.fold_names[a0] if 0 <= a0 < len(voc.fold_names) else f"⟨fold {a0}⟩"
        return f"'{name}' in any case, with or without a leading space"
    if family == F_CLASS:
        return CLASSES[a0] if 0 <= a0 < len(CLASSES) else f"⟨class {a0}⟩"
    if family == F_PREV:
        return f"right after {_q(voc, a0)}"
    if family == F_PAIR:
        return f"{_q(voc, a1)} right after {_q(voc, a0)}"
    if family == F_BEFORE:
        return f"after {_q(voc, a0)} (within {BEFORE_SPAN} tokens)"
    if family == F_NEXT:
        return f"just before {_q(voc, a0)}"
    if family == F_LINE:
        return LINE_RULES[a0] if 0 <= a0 < len(LINE_RULES) else f"⟨line {a0}⟩"
    if family == F_PREVCLASS:
        return f"after {CLASSES[a0]}" if 0 <= a0 < len(CLASSES) else f"⟨class {a0}⟩"
    return ""


def describe(voc: Vocab, family: int, args, hits: int, n: int, precision: float) -> str:
    """One neuron's explanation in words, e.g. "the token ' WITH': 19/20 top firings, precision 0.91";
    '' when no rule matched two distinct top firings."""
    if family < 0 or n <= 0:
        return ""
    rule = rule_words(voc, int(family), int(args[0]), int(args[1]))
    return f"{rule}: {hits}/{n} top firings, precision {precision:.2f}"


def describe_all(voc: Vocab, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """object [N] the explanation of every neuron (see ``describe``)."""
    fam, args, hits, n, prec = (arrays[k] for k in ("explain_family", "explain_args", "explain_hits", "explain_n",
                                                     "explain_precision"))
    return np.array([describe(voc, int(fam[i]), args[i], int(hits[i]), int(n[i]), float(prec[i]))
                     for i in range(len(fam))], dtype=object)


__all__ = ["Vocab", "features", "rule_words", "describe", "describe_all", "FAMILIES", "CLASSES", "BEFORE_SPAN"]
