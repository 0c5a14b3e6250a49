"""The token classes a rule can name ("digits", "punctuation", "a capitalised word", ...), one definition for
both rule searches: the index's explanations (store.measures.explain) and the rules a rater would name
(store.measures.rules)."""

from __future__ import annotations

import re
import unicodedata

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
