"""The token classes a rule can name ("digits", "punctuation", "a capitalised word", ...), one definition for
both rule searches: the index's explanations (store.measures.explain) and the rules a rater would name
(store.measures.rules)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# class ids are positions in this tuple; a token can be in several
CLASSES = ("digits", "a number", "punctuation", "an opening bracket", "a closing bracket", "a quote",
           "a line break", "indentation", "a capitalised word", "an all-caps word", "a word start",
           "an identifier piece", "an operator", "non-ASCII text")
WORD_START = CLASSES.index("a word start")
NUMBER = re.compile(r"[+-]?(\d[\d_]*([.,]\d+)*|0[xX][0-9a-fA-F]+)")
OPERATOR = set("=+-*/%<>!&|^~@")


def token_classes(s: str) -> list[int]:
    """Class ids (positions in CLASSES) of one readable token piece (store.measures.tokens_display: ' '
    leading space, '⏎' newline, '⇥' tab)."""
    core = s.strip(" ⇥")
    out = []
    if core.isascii() and core.isdigit():
        out.append(0)
    if core and NUMBER.fullmatch(core):
        out.append(1)
    if core and "⏎" not in core and all(unicodedata.category(ch)[0] in "PS" for ch in core):
        out.append(2)
        if set(core) <= set("([{"):
            out.append(3)
        if set(core) <= set(")]}"):
            out.append(4)
        if set(core) & set("'\"`"):
            out.append(5)
        if set(core) <= OPERATOR:
            out.append(12)
    if "⏎" in s:
        out.append(6)
    if s and set(s) <= {" ", "⇥"}:
        out.append(7)
    if core.isalpha():
        if core[0].isupper() and (len(core) == 1 or core[1:].islower()):
            out.append(8)
        if len(core) >= 2 and core.isupper():
            out.append(9)
        if s.startswith(" "):
            out.append(10)
    if ("_" in core and any(ch.isalnum() for ch in core)) or re.search(r"[a-z][A-Z]", core):
        out.append(11)
    if any(ord(ch) > 127 and ch not in "⏎⇥␍" for ch in core) or "⟨" in core:
        out.append(13)
    return out


@dataclass
class TokenTable:
    """What both rule searches read off each readable token (index V is the -1 padding token)."""

    fold: np.ndarray  # int64 [V + 1] folded-form id (leading spaces dropped, lower case); -1 for padding
    fold_names: list[str]  # the folded form of each fold id
    classes: list[list[int]]  # [V] each token's class ids (token_classes)
    starts_alpha: np.ndarray  # bool [V + 1] first character a letter (so no leading space)
    ends_alpha: np.ndarray  # bool [V + 1] last character a letter
    indent_end: np.ndarray  # bool [V + 1] a line break followed by spaces / tabs only


def token_table(strings) -> TokenTable:
    """The shared per-token tables of a readable vocabulary (store.measures.explain_families.Vocab and
    store.measures.rule_windows.RuleVocab build on them)."""
    strings = list(strings)
    V = len(strings)
    fold_ids: dict[str, int] = {}
    fold = np.full(V + 1, -1, np.int64)
    flags = np.zeros((3, V + 1), bool)
    classes = []
    for i, s in enumerate(strings):
        fold[i] = fold_ids.setdefault(s.lstrip(" ").lower(), len(fold_ids))
        classes.append(token_classes(s))
        flags[0, i] = bool(s) and s[0].isalpha()
        flags[1, i] = bool(s) and s[-1].isalpha()
        flags[2, i] = "⏎" in s and s.rstrip(" ⇥").endswith("⏎") and not s.endswith("⏎")
    names = [""] * len(fold_ids)
    for k, v in fold_ids.items():
        names[v] = k
    return TokenTable(fold, names, classes, *flags)
