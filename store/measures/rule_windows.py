"""What the rules a rater would name (store.measures.rules) read: a neuron's distinct top snippets as
integer token windows [N, S, W] (the strongest firing of each of its top ``N_SNIPPETS`` contexts,
``SPAN_BEFORE`` tokens before and ``SPAN_AFTER`` after, cut to the context the model saw), and the
per-token tables of a readable vocabulary (``RuleVocab``).

A study's snippets (token strings, ``from_snippets``) and a store's index (``windows_from_store``)
give the same windows, so both go through the same rule search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.measures.token_classes import CLASSES, token_table

N_SNIPPETS = 20  # distinct top firings judged (a rater sees 20)
SPAN_BEFORE, SPAN_AFTER = 16, 6  # the part of each snippet read (the smallest study crop in docs/studies)
N_TOKEN_CLASSES = len(CLASSES)
_CODE_CHARS = set("=()[]{}:;_")
_KEYWORDS = {"def", "class", "import", "from", "return", "if", "elif", "else", "for", "while", "try", "except",
             "with", "raise", "self", "lambda", "yield", "assert", "None", "True", "False", "pass", "async", "await"}


# ---- the vocabulary ---------------------------------------------------------------------------------
@dataclass
class RuleVocab:
    """Per-token tables of a readable vocabulary (display strings, store.tokens_display); index V is padding."""

    strings: list[str]
    fold: np.ndarray  # int64 [V + 1]
    fold_names: list[str]
    classes: np.ndarray  # bool [V + 1, N_TOKEN_CLASSES]
    flags: dict  # name -> bool [V + 1] or int [V + 1] (character counts)

    @property
    def size(self) -> int:
        return len(self.strings)

    @classmethod
    def build(cls, strings) -> "RuleVocab":
        strings = list(strings)
        V = len(strings)
        t = token_table(strings)
        classes = np.zeros((V + 1, N_TOKEN_CLASSES), bool)
        names = ("starts_alpha", "ends_alpha", "space_alpha", "newline", "code", "keyword", "word", "hash",
                 "triple", "colon_end", "role_open", "dot", "indent_end", "colon", "starts_backtick", "alpha")
        flags = {n: np.zeros(V + 1, bool) for n in names}
        counts = {n: np.zeros(V + 1, np.int64) for n in ("backtick", "dquote", "squote", "paren", "bracket",
                                                         "pipe")}
        flags["starts_alpha"], flags["ends_alpha"], flags["indent_end"] = t.starts_alpha, t.ends_alpha, t.indent_end
        for i, s in enumerate(strings):
            classes[i, t.classes[i]] = True
            core = s.strip(" ⇥")
            flags["space_alpha"][i] = len(s) >= 2 and s[0] == " " and s[1].isalpha()
            flags["newline"][i] = "⏎" in s
            flags["code"][i] = bool(set(core) & _CODE_CHARS) or core in _KEYWORDS
            flags["keyword"][i] = core in _KEYWORDS
            flags["word"][i] = core.isalpha() and core.islower()
            flags["hash"][i] = "#" in s
            flags["triple"][i] = '"""' in s or "'''" in s
            flags["colon_end"][i] = s.endswith(":")
            flags["role_open"][i] = s.startswith(":`")
            flags["colon"][i] = s == ":"
            flags["starts_backtick"][i] = s.startswith("`")
            flags["alpha"][i] = core.isalpha()
            flags["dot"][i] = core == "."
            counts["backtick"][i] = s.count("`")
            counts["dquote"][i] = s.count('"') - 3 * s.count('"""')
            counts["squote"][i] = s.count("'") if not any(ch.isalpha() for ch in s) else 0
            counts["paren"][i] = s.count("(") - s.count(")")
            counts["bracket"][i] = s.count("[") - s.count("]")
            counts["pipe"][i] = s.count("|")
        return cls(strings, t.fold, t.fold_names, classes, {**flags, **counts})


# ---- windows ------------------------------------------------------------------------------------------
@dataclass
class Windows:
    """The snippets of N neurons as token windows: tokens int64 [N, S, W] (-1: none), acts float32
    [N, S, W], the firing at column ``center``; snippet s of neuron i is present where tokens[i, s,
    center] >= 0."""

    tokens: np.ndarray
    acts: np.ndarray
    center: int

    def __len__(self) -> int:
        return self.tokens.shape[0]


def crop(tokens: np.ndarray, acts: np.ndarray, center: int) -> Windows:
    """Cut windows to SPAN_BEFORE before and SPAN_AFTER after the firing (padding with -1 where short)."""
    N, S, W = tokens.shape
    lo, hi = center - SPAN_BEFORE, center + SPAN_AFTER + 1
    out_t = np.full((N, S, SPAN_BEFORE + 1 + SPAN_AFTER), -1, np.int64)
    out_a = np.zeros(out_t.shape, np.float32)
    a, b = max(0, lo), min(W, hi)
    out_t[:, :, a - lo:b - lo] = tokens[:, :, a:b]
    out_a[:, :, a - lo:b - lo] = acts[:, :, a:b]
    out_a = np.where(out_t >= 0, out_a, 0.0).astype(np.float32)
    return Windows(out_t, out_a, SPAN_BEFORE)


def from_snippets(items: list[list[dict]]) -> tuple[Windows, RuleVocab]:
    """Windows and a vocabulary from study snippets (per item a list of {tokens: [str], acts: [float],
    center}), as study.json holds them; the first N_SNIPPETS per item."""
    ids: dict[str, int] = {}
    S = N_SNIPPETS
    W = SPAN_BEFORE + 1 + SPAN_AFTER
    tok = np.full((len(items), S, W), -1, np.int64)
    act = np.zeros((len(items), S, W), np.float32)
    for i, snips in enumerate(items):
        for s, sn in enumerate(snips[:S]):
            c = int(sn["center"])
            for j, (t, a) in enumerate(zip(sn["tokens"], sn["acts"])):
                col = j - c + SPAN_BEFORE
                if 0 <= col < W:
                    tok[i, s, col] = ids.setdefault(t, len(ids))
                    act[i, s, col] = a
    strings = [""] * len(ids)
    for t, k in ids.items():
        strings[k] = t
    return Windows(tok, act, SPAN_BEFORE), RuleVocab.build(strings)


def windows_from_store(store, hook: str) -> Windows:
    """The distinct top snippets of every neuron of an indexed hook, as the study draws them (one per
    context, cut to the context the model saw), cropped like ``crop``."""
    from store.measures.snippets import context_slots, index_window

    before, after = index_window(store.index_state(hook))
    state = store.index_state(hook)
    kind = "distinct_top" if state.get("distinct_lists") else "top"
    pos = np.asarray(store.index_array(hook, f"{kind}_positions")[...], np.int64)
    acts = np.asarray(store.index_array(hook, f"{kind}_context_acts")[...], np.float32)
    if kind == "distinct_top" and before >= SPAN_BEFORE and after >= SPAN_AFTER:
        # the index's token windows are the token stream around each position: gather only the cropped
        # slots of the first N_SNIPPETS (not the whole stored width of every list entry, ~7x the tokens)
        pos = pos[:, :N_SNIPPETS]
        toks = store.window_tokens(pos, SPAN_BEFORE, SPAN_AFTER).astype(np.int64)
        toks = np.where(context_slots(pos, SPAN_BEFORE, toks.shape[-1], store.context_len), toks, -1)
        acts = acts[:, :N_SNIPPETS, before - SPAN_BEFORE:before + SPAN_AFTER + 1]
        return Windows(toks, np.where(toks >= 0, acts, 0.0).astype(np.float32), SPAN_BEFORE)
    return _stored_windows(store, hook, kind, pos, acts, before)


def _stored_windows(store, hook: str, kind: str, pos: np.ndarray, acts: np.ndarray, before: int) -> Windows:
    """``windows_from_store`` from the index's stored token windows (any index; the general path)."""
    from store.measures.snippets import context_slots

    toks = np.asarray(store.index_array(hook, f"{kind}_context_tokens")[...], np.int64)
    if kind == "top":  # an older index: one firing per context from the raw top-k
        from store.measures.snippets import one_per_context

        vals = np.asarray(store.index_array(hook, "top_values")[...], np.float64)
        keep_pos = np.full((pos.shape[0], N_SNIPPETS), -1, np.int64)
        keep_t = np.full((pos.shape[0], N_SNIPPETS, toks.shape[-1]), -1, np.int64)
        keep_a = np.zeros(keep_t.shape, np.float32)
        for i in range(pos.shape[0]):
            idx = one_per_context(pos[i], vals[i], store.context_len)[0][:N_SNIPPETS]
            keep_pos[i, :len(idx)], keep_t[i, :len(idx)], keep_a[i, :len(idx)] = pos[i, idx], toks[i, idx], acts[i, idx]
        pos, toks, acts = keep_pos, keep_t, keep_a
    pos, toks, acts = pos[:, :N_SNIPPETS], toks[:, :N_SNIPPETS], acts[:, :N_SNIPPETS]
    inside = context_slots(pos, before, toks.shape[-1], store.context_len)
    toks = np.where(inside, toks, -1)
    return crop(toks, np.where(inside, acts, 0.0).astype(np.float32), before)


__all__ = ["RuleVocab", "Windows", "crop", "from_snippets", "windows_from_store", "N_SNIPPETS", "SPAN_BEFORE",
           "SPAN_AFTER", "N_TOKEN_CLASSES"]
