"""Rules a rater would name, judged on what a rater sees: a neuron's distinct top snippets.

The SoLU paper's raters call a neuron interpretable when at least 80% of its strongest firings
follow one rule or category they can name. ``rule_arrays`` searches, per neuron, a library of
rules read off the same snippets a blinded study shows (the strongest firing of each of its top
``N_SNIPPETS`` contexts, ``SPAN_BEFORE`` tokens before and ``SPAN_AFTER`` after, cut to the
context the model saw) and keeps the best one. Rule families:

* **one token** / **one word in any case** / **the token before** / **the token after** / **a pair**
  / **a token within 8 before** (as store.explain);
* **a small token set**: the firing tokens most often seen, as many as a description-length
  trade-off allows (each member must cover at least two firings and pay ``MEMBER_COST``), whose
  members share a token class other than "a word start" (``GROUP_CLASSES``: nearly every word is
  one, so ' to' and ' des' are no category) or are one word in several cases;
* **a token class**: digits, a number, punctuation, brackets, quotes, a line break, indentation, a
  capitalised / all-caps word, a word start, an identifier piece, an operator, non-ASCII text;
* **a position inside a split word**: a piece inside a longer word, the second piece, the first
  piece of a word that continues, the last piece;
* **a context span**: inside backticks, inside double or single quotes, the role name of Sphinx
  markup (``:func:``, ``:class:``), inside a Sphinx cross-reference, inside parentheses or square
  brackets, a table row, a comment, a docstring, a code line, a line of prose, a line start;
* **a token repeated from earlier in the context**;
* **number and version patterns**: digits after a dot, a piece of a version number (3.11, 2.0.1);
* **a conjunction of two simple conditions** (e.g. "a capitalised word, inside quotes"), from the
  ``CONJ_TOP`` simple conditions that cover most firings, at a cost of ``CONJ_COST``.

A rule is rated by **coverage** (the share of the distinct top firings it matches) and
**precision** (the share of its other occurrences in the snippets, the positions a rater also
sees, where the neuron is high: at least halfway from the snippets' typical activation to the
median top firing; ``PRIOR_N`` occurrences of ``PRIOR_PRECISION`` are added, so a rule never seen
elsewhere counts as fairly specific). The score is the F2 measure of coverage and precision
(coverage counts more, as in the paper's rule) minus the rule's description cost. Words read like
a rater's rule: ``the role name in Sphinx markup (:func:, :class:, ...): 17/20 firings``.

The rules read integer token windows vectorised over neurons (NumPy; no language model): a study's
snippets and a store's index give the same windows (store.measures.rule_windows).
"""

from __future__ import annotations

import numpy as np

from store.measures.rule_windows import N_TOKEN_CLASSES, RuleVocab, Windows, windows_from_store
from store.measures.token_classes import WORD_START

HIGH_FRACTION = 0.5  # "high": this far from the typical snippet activation to the median top firing
PRIOR_N, PRIOR_PRECISION = 2.0, 0.7  # precision prior: occurrences and their share high
BETA = 2.0
MIN_HITS = 2
MEMBER_COST = 0.05  # each token of a token set past the first
CONJ_COST = 0.04  # a conjunction of two conditions
CONJ_TOP = 6  # simple conditions per neuron combined pairwise
SET_MAX = 5  # at most this many tokens in a set
BEFORE_SPAN = 8
BEFORE_TOP = 6  # 'before' candidates rated per neuron (those covering most firings)
BLOCK = 256  # neurons per vectorised block
SHADE_SHARE = 0.2  # study renderings shade tokens at >= this share of the item's strongest firing

# value families (the rule names a token) and the fixed conditions (a predicate of each position)
V_TOKEN, V_FOLD, V_PREV, V_NEXT, V_PAIR, V_BEFORE, V_SET = range(7)
VALUE_FAMILIES = ("token", "folded", "previous", "next", "pair", "before", "token set")
CONDITIONS = (
    # token classes
    "digits", "a number", "punctuation", "an opening bracket", "a closing bracket", "a quote mark",
    "a line break", "indentation", "a capitalised word", "an all-caps word", "a word start",
    "an identifier piece", "an operator", "non-ASCII text",
    # split words
    "a word piece inside a longer word", "the second piece of a split word",
    "the first piece of a word that continues", "the last piece of a split word",
    # spans
    "inside backticks", "inside double quotes", "inside single quotes", "the role name in Sphinx markup "
    "(:func:, :class:, ...)", "inside a Sphinx cross-reference (:role:`...`)", "inside parentheses",
    "inside square brackets", "in a table row", "in a comment", "inside a docstring", "on a code line",
    "in a line of prose", "at the start of a line", "the first token after indentation",
    # repetition, numbers
    "a token repeated from earlier in the context", "digits after a dot", "a piece of a version number",
    # previous token's class
    "right after a line break", "right after punctuation", "right after an opening bracket",
    "right after a quote mark", "right after digits", "right after a word start",
)
C = {name: i for i, name in enumerate(CONDITIONS)}
GROUP_CLASSES = np.array([i for i in range(N_TOKEN_CLASSES) if i != WORD_START])  # classes a token set may share
POSITIVE = 5e-4  # "active": at least this share of the strongest firing (a study keeps 3 decimals of that share)


# ---- conditions of positions ----------------------------------------------------------------------------
def _shift(x: np.ndarray, k: int, fill) -> np.ndarray:
    """x[..., j - k] at column j (k > 0: the value k columns before), ``fill`` past the edge."""
    out = np.full_like(x, fill)
    if k > 0:
        out[..., k:] = x[..., :-k]
    elif k < 0:
        out[..., :k] = x[..., -k:]
    else:
        out[...] = x
    return out


def conditions(tokens: np.ndarray, voc: RuleVocab) -> np.ndarray:
    """bool [..., W, len(CONDITIONS)]: which condition holds at each window position."""
    V = voc.size
    has = tokens >= 0
    t = np.where(has, tokens, V)
    p = _shift(t, 1, V)
    pp = _shift(t, 2, V)
    n = _shift(t, -1, V)
    nn = _shift(t, -2, V)
    f = voc.flags
    out = np.zeros(tokens.shape + (len(CONDITIONS),), bool)
    out[..., :N_TOKEN_CLASSES] = voc.classes[t]
    inside = (p < V) & f["starts_alpha"][t] & f["ends_alpha"][p]
    cont_next = (n < V) & f["starts_alpha"][n] & f["ends_alpha"][t]
    out[..., C["a word piece inside a longer word"]] = inside
    out[..., C["the second piece of a split word"]] = inside & f["space_alpha"][p]
    out[..., C["the first piece of a word that continues"]] = f["space_alpha"][t] & cont_next
    out[..., C["the last piece of a split word"]] = inside & ~cont_next

    # spans: parities and depths of what came before in the window (exclusive of the token itself)
    def before_sum(name):
        x = f[name][t].astype(np.int64)
        return np.cumsum(x, -1) - x

    line_id = np.cumsum(f["newline"][t].astype(np.int64), -1) - f["newline"][t]  # a newline token ends its line

    def on_line_before(name):
        x = f[name][t].astype(np.int64)
        cs = np.cumsum(x, -1) - x
        # the cumulative count at the start of this position's line
        start = np.zeros_like(cs)
        nl = f["newline"][t]
        # value of cs at the first position of each line: carried forward from the position after a newline
        first = np.ones_like(nl)
        first[..., 1:] = nl[..., :-1]
        marker = np.where(first, cs, -1)
        start = np.maximum.accumulate(marker, axis=-1)
        return cs - start

    bt = before_sum("backtick")
    out[..., C["inside backticks"]] = has & (bt % 2 == 1)
    out[..., C["inside double quotes"]] = has & (before_sum("dquote") % 2 == 1)
    out[..., C["inside single quotes"]] = has & (on_line_before("squote") % 2 == 1)
    # the role name: ':' just before and ':`' (or ':' then '`') just after
    role = f["colon_end"][p] & (f["role_open"][n] | (f["colon"][n] & f["starts_backtick"][nn]))
    out[..., C["the role name in Sphinx markup (:func:, :class:, ...)"]] = has & role & f["alpha"][t]
    # inside a cross-reference: inside backticks whose opening token starts with ':`' or follows a ':'
    idx = np.broadcast_to(np.arange(tokens.shape[-1]), tokens.shape)
    has_bt = f["backtick"][t] > 0
    last_bt = np.maximum.accumulate(np.where(has_bt, idx, -1), -1)
    last_bt = _shift(last_bt, 1, -1)  # the last backtick strictly before
    opener = np.take_along_axis(t, np.maximum(last_bt, 0), -1)
    opener_prev = np.take_along_axis(p, np.maximum(last_bt, 0), -1)
    xref = (last_bt >= 0) & (f["role_open"][opener] | f["colon_end"][opener_prev])
    out[..., C["inside a Sphinx cross-reference (:role:`...`)"]] = has & (bt % 2 == 1) & xref
    out[..., C["inside parentheses"]] = has & (on_line_before("paren") > 0)
    out[..., C["inside square brackets"]] = has & (on_line_before("bracket") > 0)
    out[..., C["in a table row"]] = has & (on_line_before("pipe") > 0) | has & (f["pipe"][t] > 0) & \
        (on_line_before("pipe") > 0)
    out[..., C["in a comment"]] = has & (on_line_before("hash") > 0)
    out[..., C["inside a docstring"]] = has & (before_sum("triple") % 2 == 1)
    code_before = on_line_before("code")
    words_before = on_line_before("word")
    out[..., C["on a code line"]] = has & ((code_before > 0) | f["code"][t]) & ~(words_before >= 3)
    out[..., C["in a line of prose"]] = has & (words_before >= 2) & (code_before == 0) & ~f["code"][t]
    del line_id
    line_start = (p == V) | f["newline"][p] & ~f["indent_end"][p]
    out[..., C["at the start of a line"]] = has & line_start
    after_indent = f["indent_end"][p] | (voc.classes[p, 7] & f["newline"][pp])
    out[..., C["the first token after indentation"]] = has & after_indent
    # a token repeated from earlier in the window
    W = tokens.shape[-1]
    earlier = np.tril(np.ones((W, W), bool), -1)  # [j, j'] j' < j
    same = (tokens[..., :, None] == tokens[..., None, :]) & earlier & has[..., None, :]
    out[..., C["a token repeated from earlier in the context"]] = has & same.any(-1)
    dig = voc.classes[:, 0]
    out[..., C["digits after a dot"]] = has & dig[t] & f["dot"][p]
    out[..., C["a piece of a version number"]] = has & dig[t] & ((f["dot"][p] & dig[pp]) | (f["dot"][n] & dig[nn]))
    out[..., C["right after a line break"]] = has & f["newline"][p]
    out[..., C["right after punctuation"]] = has & voc.classes[p, 2]
    out[..., C["right after an opening bracket"]] = has & voc.classes[p, 3]
    out[..., C["right after a quote mark"]] = has & voc.classes[p, 5]
    out[..., C["right after digits"]] = has & voc.classes[p, 0]
    out[..., C["right after a word start"]] = has & voc.classes[p, 10]
    return out


# ---- the search -----------------------------------------------------------------------------------------
OUT_NAMES = ("rule_kind", "rule_a", "rule_b", "rule_hits", "rule_n", "rule_coverage", "rule_precision", "rule_score")
KIND_VALUE, KIND_COND, KIND_CONJ = 0, 1, 2


def _f2(prec, cov):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(prec + cov > 0, (1 + BETA**2) * prec * cov / (BETA**2 * prec + cov), 0.0)


def _rate(match: np.ndarray, center: np.ndarray, high: np.ndarray, other: np.ndarray, n_top: np.ndarray):
    """match bool [b, R, S, W] for R rules -> (hits [b, R], coverage, precision)."""
    hits = (match & center[:, None]).sum((2, 3))
    m = (match & other[:, None]).sum((2, 3))
    h = (match & other[:, None] & high[:, None]).sum((2, 3))
    prec = (h + PRIOR_N * PRIOR_PRECISION) / (m + PRIOR_N)
    cov = hits / np.maximum(n_top, 1)[:, None]
    return hits, cov, prec


def rule_arrays(win: Windows, voc: RuleVocab, block: int = BLOCK) -> dict[str, np.ndarray]:
    """Per neuron the best rule (OUT_NAMES): kind (0 value family, 1 condition, 2 conjunction, -1 none),
    its arguments (a, b: family and token id, a condition, two conditions; a token set's tokens are
    kept as a bit list in ``rule_set``), hits / n distinct firings, coverage, precision and score."""
    N = len(win)
    out = {"rule_kind": np.full(N, -1, np.int8), "rule_a": np.full(N, -1, np.int64), "rule_b": np.full(N, -1, np.int64),
           "rule_hits": np.zeros(N, np.int32), "rule_n": np.zeros(N, np.int32),
           "rule_coverage": np.full(N, np.nan, np.float32), "rule_precision": np.full(N, np.nan, np.float32),
           "rule_score": np.full(N, np.nan, np.float32), "rule_set": np.full((N, SET_MAX), -1, np.int64),
           "shaded_other": np.full(N, np.nan, np.float32), "top_ratio": np.full(N, np.nan, np.float32),
           "positive_other": np.full(N, np.nan, np.float32), "log_kurtosis": np.full(N, np.nan, np.float32),
           "rule_is_set": np.full(N, np.nan, np.float32)}
    for b0 in range(0, N, block):
        sl = slice(b0, min(N, b0 + block))
        res = _block(win.tokens[sl], win.acts[sl], win.center, voc)
        for k, v in res.items():
            out[k][sl] = v
    return out


def _row_medians(act: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[b]: per row i the median of act[i][mask[i]] (0 where the mask is empty), equal to (and of the dtype of)
    ``np.array([np.median(act[i][mask[i]]) if mask[i].any() else 0.0 for i in range(b)])`` (the middle order
    statistic, or the mean of the two middle ones in act's dtype), in one sort."""
    b = act.shape[0]
    x = np.where(mask, act, np.inf).reshape(b, -1)
    n = mask.reshape(b, -1).sum(1)
    nan_rows = np.isnan(x).any(1)
    x = np.sort(x, 1)
    k = n // 2
    rows = np.arange(b)
    hi_ = x[rows, k.clip(0, x.shape[1] - 1)]
    lo_ = x[rows, (k - 1).clip(0, x.shape[1] - 1)]
    two = ((lo_ + hi_) / act.dtype.type(2)).astype(act.dtype)
    med = np.where(n % 2 == 1, hi_, two)
    out = np.where(n > 0, med.astype(np.float64), 0.0)
    for i in np.flatnonzero(nan_rows & (n > 0)):  # NaN among the values: np.median's own answer
        out[i] = np.median(act[i][mask[i]])
    # the dtype np.array gives the per-row list: the values' own when no row is empty, else float64
    return out.astype(act.dtype) if b and (n > 0).all() else out


def _block(tok: np.ndarray, act: np.ndarray, c: int, voc: RuleVocab) -> dict[str, np.ndarray]:
    b, S, W = tok.shape
    V = voc.size
    present = tok[:, :, c] >= 0  # [b, S]
    n_top = present.sum(1)
    center = np.zeros((b, S, W), bool)
    center[:, :, c] = present
    has = tok >= 0
    other = has & ~center & present[:, :, None]
    top_acts = np.where(present, act[:, :, c], np.nan)
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(n_top[:, None] > 0, top_acts, 0.0), 1)
        base = _row_medians(act, other)
    tau = base + HIGH_FRACTION * (med - base)
    high = act >= tau[:, None, None]
    alive = (n_top >= MIN_HITS) & (med > base)
    # what a rater's rendering shades: other tokens at >= SHADE_SHARE of the neuron's strongest firing
    with np.errstate(all="ignore"):
        top_max = np.nanmax(np.where(n_top[:, None] > 0, top_acts, -np.inf), 1)
        shaded = (other & (act >= SHADE_SHARE * top_max[:, None, None])).sum((1, 2)) / np.maximum(other.sum((1, 2)), 1)
        top_ratio = np.where(top_max > 0, med / top_max, np.nan)
        # how sparse the snippets are, on what a study keeps (each activation as a share of the strongest,
        # negatives as zero): the share of the other tokens active at all, and the (log) kurtosis of every
        # snippet activation (a few strong firings among silent tokens is high)
        rel = np.clip(act, 0.0, None) / np.where(top_max > 0, top_max, 1.0)[:, None, None]
        positive = (other & (rel >= POSITIVE)).sum((1, 2)) / np.maximum(other.sum((1, 2)), 1)
        seen = has & present[:, :, None]
        k_n = np.maximum(seen.sum((1, 2)), 1)
        k_mean = np.where(seen, rel, 0.0).sum((1, 2)) / k_n
        k_dev = np.where(seen, rel - k_mean[:, None, None], 0.0)
        k_var = (k_dev ** 2).sum((1, 2)) / k_n
        log_kurt = np.where(k_var > 0, np.log((k_dev ** 4).sum((1, 2)) / k_n / np.where(k_var > 0, k_var, 1) ** 2),
                            np.nan)

    cands_score, cands = [], []  # per family: score [b, R], and descriptors

    # fixed conditions
    cond = conditions(tok, voc)  # [b, S, W, K]
    cm = np.moveaxis(cond, -1, 1)  # [b, K, S, W]
    hits, cov, prec = _rate(cm, center, high, other, n_top)
    s_cond = np.where(hits >= MIN_HITS, _f2(prec, cov), 0.0)
    cands_score.append(s_cond)
    cands.append(("cond", hits, cov, prec))

    # value families: candidates are the values at the firings (one per snippet)
    t = np.where(has, tok, V)
    prev = _shift(t, 1, V)
    nxt = _shift(t, -1, V)
    fold = voc.fold[t]
    val_fams = {V_TOKEN: t, V_FOLD: fold, V_PREV: prev, V_NEXT: nxt, V_PAIR: prev * (V + 1) + t}
    vs_scores, vs_desc = [], []
    for fam, arr in val_fams.items():
        cv = arr[:, :, c]  # [b, S] candidate value per snippet
        cv = np.where(present, cv, -2)
        match = arr[:, None, :, :] == cv[:, :, None, None]  # [b, S(cand), S, W]
        if fam in (V_TOKEN, V_FOLD):
            match &= has[:, None]
        if fam == V_PREV:
            match &= (prev < V)[:, None]
        if fam == V_NEXT:
            match &= (nxt < V)[:, None]
        h, cv_, pr = _rate(match, center, high, other, n_top)
        sc = np.where((h >= MIN_HITS) & present & (cv >= 0), _f2(pr, cv_), 0.0)
        vs_scores.append(sc)
        vs_desc.append((fam, arr[:, :, c], h, cv_, pr))
    # before: a token among the BEFORE_SPAN before the firing; the BEFORE_TOP candidates covering most
    # firings are rated (coverage first, cheaply, over the firings only)
    bef = np.stack([_shift(t, k, V) for k in range(1, BEFORE_SPAN + 1)], -1)  # [b, S, W, 8]
    at_c = bef[:, :, c, :]  # [b, S, 8]
    cb = np.where(np.repeat(present, BEFORE_SPAN, 1), at_c.reshape(b, -1), V)  # [b, S * 8] candidates
    cover = (at_c[:, None, :, :] == cb[:, :, None, None]).any(-1).sum(-1)  # [b, S * 8] firings with it
    cover = np.where(cb < V, cover, -1)
    pick = np.argsort(-cover, 1, kind="stable")[:, :BEFORE_TOP]
    cb = np.take_along_axis(cb, pick, 1)  # [b, T]
    match = np.zeros((b, cb.shape[1], S, W), bool)
    for k in range(BEFORE_SPAN):
        match |= bef[:, None, :, :, k] == cb[:, :, None, None]
    match &= (cb < V)[:, :, None, None]
    h, cv_, pr = _rate(match, center, high, other, n_top)
    sc = np.where((h >= MIN_HITS) & (cb < V), _f2(pr, cv_) - 0.02, 0.0)  # harder to see than "the token before"
    vs_scores.append(sc)
    vs_desc.append((V_BEFORE, cb, h, cv_, pr))

    # token sets: the firing tokens by how many firings they cover, as many as pays
    ft = np.where(present, t[:, :, c], -1)  # [b, S]
    cnt = (ft[:, :, None] == ft[:, None, :]).sum(1)  # [b, S] count of each snippet's token
    set_best = np.zeros(b)
    set_members = np.full((b, SET_MAX), -1, np.int64)
    set_stats = np.zeros((b, 3))
    for i in range(b):
        if not alive[i]:
            continue
        u, k = np.unique(ft[i][ft[i] >= 0], return_counts=True)
        order = np.argsort(-k, kind="stable")
        u, k = u[order], k[order]
        u = u[k >= MIN_HITS][:SET_MAX]
        if u.size < 2:
            continue
        # members must share something a rater can name: one word in any case, or a token class
        shared = voc.classes[u][:, GROUP_CLASSES].all(0)
        if not (shared.any() or (voc.fold[u] == voc.fold[u[0]]).all()):
            # the longest prefix of the list that does
            ok = 1
            for m in range(2, u.size + 1):
                if voc.classes[u[:m]][:, GROUP_CLASSES].all(0).any() or (voc.fold[u[:m]] == voc.fold[u[0]]).all():
                    ok = m
            u = u[:ok]
            if u.size < 2:
                continue
        best = 0.0
        for m in range(2, u.size + 1):
            members = u[:m]
            mt = np.isin(t[i], members) & has[i]
            hi = int((mt & center[i]).sum())
            mm = int((mt & other[i]).sum())
            hh = int((mt & other[i] & high[i]).sum())
            pr_ = (hh + PRIOR_N * PRIOR_PRECISION) / (mm + PRIOR_N)
            cv2 = hi / max(n_top[i], 1)
            s = float(_f2(np.array(pr_), np.array(cv2))) - MEMBER_COST * (m - 1)
            if s > best:
                best = s
                set_members[i] = -1
                set_members[i, :m] = members
                set_stats[i] = (hi, cv2, pr_)
        set_best[i] = best
    del cnt

    # conjunctions of the CONJ_TOP conditions covering most firings
    top_c = np.argsort(-np.where(hits >= MIN_HITS, hits, -1), 1, kind="stable")[:, :CONJ_TOP]  # [b, T]
    sel = np.take_along_axis(cm, top_c[:, :, None, None], 1)  # [b, T, S, W]
    pairs = [(x, y) for x in range(CONJ_TOP) for y in range(x + 1, CONJ_TOP)]
    pm = np.stack([sel[:, x] & sel[:, y] for x, y in pairs], 1)  # [b, P, S, W]
    hp, cvp, prp = _rate(pm, center, high, other, n_top)
    sp = np.where(hp >= MIN_HITS, _f2(prp, cvp) - CONJ_COST, 0.0)

    # pick the best per neuron
    res = {"rule_kind": np.full(b, -1, np.int8), "rule_a": np.full(b, -1, np.int64), "rule_b": np.full(b, -1, np.int64),
           "rule_hits": np.zeros(b, np.int32), "rule_n": n_top.astype(np.int32),
           "rule_coverage": np.full(b, np.nan, np.float32), "rule_precision": np.full(b, np.nan, np.float32),
           "rule_score": np.where(n_top > 0, 0.0, np.nan).astype(np.float32),
           "rule_set": np.full((b, SET_MAX), -1, np.int64),
           "shaded_other": np.where(n_top > 0, shaded, np.nan).astype(np.float32),
           "top_ratio": top_ratio.astype(np.float32),
           "positive_other": np.where(n_top > 0, positive, np.nan).astype(np.float32),
           "log_kurtosis": np.where(n_top > 0, log_kurt, np.nan).astype(np.float32),
           "rule_is_set": np.where(n_top > 0, 0.0, np.nan).astype(np.float32)}
    best_v = np.zeros(b)
    for i in range(b):
        if not alive[i]:
            continue
        options = []
        j = int(np.argmax(s_cond[i]))
        options.append((s_cond[i, j], 1, KIND_COND, j, -1, hits[i, j], cov[i, j], prec[i, j]))
        for sc, (fam, vals, h, cv_, pr) in zip(vs_scores, vs_desc):
            j = int(np.argmax(sc[i]))
            simple = 0 if fam in (V_TOKEN,) else 1 if fam in (V_FOLD, V_PREV, V_NEXT) else 2
            options.append((sc[i, j], simple, KIND_VALUE, fam, int(vals[i, j]), h[i, j], cv_[i, j], pr[i, j]))
        if set_best[i] > 0:
            options.append((set_best[i], 2, KIND_VALUE, V_SET, -1, *set_stats[i]))
        j = int(np.argmax(sp[i]))
        x, y = pairs[j]
        options.append((sp[i, j], 3, KIND_CONJ, int(top_c[i, x]), int(top_c[i, y]), hp[i, j], cvp[i, j], prp[i, j]))
        options.sort(key=lambda o: (-o[0], o[1]))
        s, _, kind, a, bb, hh, cc, pp = options[0]
        if s <= 0:
            continue
        best_v[i] = s
        res["rule_kind"][i], res["rule_a"][i], res["rule_b"][i] = kind, a, bb
        res["rule_hits"][i], res["rule_coverage"][i], res["rule_precision"][i] = int(hh), cc, pp
        res["rule_score"][i] = s
        if kind == KIND_VALUE and a == V_SET:
            res["rule_set"][i] = set_members[i]
            res["rule_is_set"][i] = 1.0
    return res


# ---- words -------------------------------------------------------------------------------------------------
def _q(voc: RuleVocab, t: int) -> str:
    return f"'{voc.strings[t]}'" if 0 <= t < voc.size else "⟨?⟩"


def rule_words(voc: RuleVocab, kind: int, a: int, b: int, members=()) -> str:
    """The rule as a rater would write it."""
    V = voc.size
    if kind == KIND_COND:
        return CONDITIONS[a]
    if kind == KIND_CONJ:
        return f"{CONDITIONS[a]}, {CONDITIONS[b]}"
    if kind != KIND_VALUE:
        return ""
    if a == V_TOKEN:
        return f"the token {_q(voc, b)}"
    if a == V_FOLD:
        name = voc.fold_names[b] if 0 <= b < len(voc.fold_names) else "?"
        return f"the word '{name}' in any case"
    if a == V_PREV:
        return f"right after {_q(voc, b)}"
    if a == V_NEXT:
        return f"just before {_q(voc, b)}"
    if a == V_PAIR:
        return f"{_q(voc, b % (V + 1))} right after {_q(voc, b // (V + 1))}"
    if a == V_BEFORE:
        return f"after {_q(voc, b)} (within {BEFORE_SPAN} tokens)"
    if a == V_SET:
        ms = [int(m) for m in members if m >= 0]
        return "one of the tokens " + ", ".join(_q(voc, m) for m in ms)
    return ""


def describe(voc: RuleVocab, arrays: dict, i: int) -> str:
    """Neuron i's best rule in words with its coverage, e.g. "inside backticks: 17/20 firings, precision 0.82"."""
    kind = int(arrays["rule_kind"][i])
    if kind < 0:
        return ""
    words = rule_words(voc, kind, int(arrays["rule_a"][i]), int(arrays["rule_b"][i]), arrays["rule_set"][i])
    return (f"{words}: {int(arrays['rule_hits'][i])}/{int(arrays['rule_n'][i])} firings, "
            f"precision {float(arrays['rule_precision'][i]):.2f}")


def store_rules(store, hook: str) -> tuple[dict[str, np.ndarray], RuleVocab]:
    """``rule_arrays`` of every neuron of an indexed hook of a Store, and the vocabulary to word them."""
    voc = RuleVocab.build(store.token_strings(np.arange(int(store.model_config["d_vocab"]))))
    return rule_arrays(windows_from_store(store, hook), voc), voc


__all__ = ["conditions", "rule_arrays", "rule_words", "describe", "store_rules", "CONDITIONS", "OUT_NAMES"]
