"""Two automated interpretability scores per neuron, computed without any language model.

**Token-rule score** (``token_rule_score``): the share of a neuron's top-k firings whose current
token is the single most common current token among them. 1.0 means every one of the k strongest
activations sits on the same token (the neuron "is" a token detector); a neuron spread over many
tokens scores about max-count/k. A proxy for the SoLU paper's "most of the strongest firings follow
one rule", where the only rule it can see is "the current token is X".

**Token lookup correlation** (``sim_score``; formerly called the "simulation score": it is not
OpenAI's explain-and-simulate score (Bills et al. 2023), only its shape with the "explanation" replaced by
a lookup table): the neuron's mean activation per current token. The
table is fitted on one half of the tokens and scored on the other (2-fold by context parity: a
position in an even context is predicted from the odd contexts' table and vice versa, so no
position predicts itself). The score is the Pearson correlation between prediction and truth over
the neuron's top-k positions plus its "random" samples, as OpenAI scores over top and random
excerpts. Tokens never seen in the other half are predicted as the neuron's overall mean.

Limits: both see only the current token. A neuron that reads context (bigrams, position, syntax)
scores low although a human might explain it; a neuron whose top firings are one frequent token
may score high on the token rule yet mean little. The sim score uses k + SAMPLES_PER_BIN points
per neuron (about 42 by default), so it is noisy per neuron and meaningful as a distribution; it
is NaN when fewer than 3 points exist or the truth is constant, and 0 when the prediction is
constant. Compare models with ``store.format.score_summary.score_summary``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from store.measures.columns import SCORES, THRESHOLDS

SUMMARY_BINS = np.linspace(0.0, 1.0, 21)  # histogram edges for the distributions (sim < 0 -> first bin)


def token_rule(tokens: np.ndarray, top_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score float32 [N], most common token int32 [N]) from top-k positions.

    tokens: int [n_tokens] the store's token ids; top_pos: int64 [N, k], -1 = no entry.
    Ties between equally common tokens go to the lower token id. NaN / -1 for a neuron without entries.
    """
    N, k = top_pos.shape
    valid = top_pos >= 0
    t = np.where(valid, tokens[np.clip(top_pos, 0, None)].astype(np.int64), -1 - np.arange(k))  # invalid: unique
    s = np.sort(t, axis=1)
    is_start = np.ones_like(s, bool)
    is_start[:, 1:] = s[:, 1:] != s[:, :-1]
    col = np.arange(k)
    start_idx = np.maximum.accumulate(np.where(is_start, col, 0), axis=1)
    run = col - start_idx + 1  # run length so far at each column  # [N, k]
    run = np.where(s >= 0, run, 0)
    best = run.max(axis=1)
    # the token of the longest run: the first column (lowest id) reaching the maximum
    at = np.argmax(run == best[:, None], axis=1)
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(n_valid > 0, best / n_valid, np.nan).astype(np.float32)
    tok = np.where(n_valid > 0, s[np.arange(N), at], -1).astype(np.int32)
    return score, tok


def token_rule_score(tokens: np.ndarray, top_pos: np.ndarray) -> np.ndarray:
    """float32 [N]: see ``token_rule``."""
    return token_rule(tokens, top_pos)[0]


def sim_score(tokens: np.ndarray, context_len: int, token_sum: np.ndarray, token_count: np.ndarray,
              eval_pos: np.ndarray, eval_val: np.ndarray, mean_all: np.ndarray,
              token_rows: np.ndarray | None = None) -> np.ndarray:
    """float32 [N] held-out correlation of per-token-mean predictions with the truth.

    token_sum: [2, T, N] activation sums per current token by context parity (0 = even contexts), row
    ``token_rows[t]`` for token id t (-1: not seen; None: the rows are the token ids);
    token_count: [2, V]; eval_pos / eval_val: [N, m] positions (-1 = none) and true activations
    (the top-k and the random samples); mean_all: [N] fallback prediction.
    """
    N, m = eval_pos.shape
    valid = (eval_pos >= 0) & np.isfinite(eval_val)
    p = np.clip(eval_pos, 0, None)
    tok = tokens[p].astype(np.int64)  # [N, m]
    other = 1 - ((p // context_len) & 1)  # the half the table is fitted on  # [N, m]
    cnt = token_count[other, tok]  # [N, m]
    rows = tok if token_rows is None else np.asarray(token_rows)[tok]  # [N, m]; -1 only where cnt is 0
    if token_sum.shape[1]:
        sums = token_sum[other, np.maximum(rows, 0), np.arange(N)[:, None]].astype(np.float64)  # [N, m]
    else:
        sums = np.zeros(tok.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = np.where(cnt > 0, sums / np.maximum(cnt, 1), mean_all[:, None])
    x = np.where(valid, pred, 0.0)
    y = np.where(valid, eval_val.astype(np.float64), 0.0)
    n = valid.sum(axis=1)
    nn = np.maximum(n, 1)
    mx = x.sum(1) / nn
    my = y.sum(1) / nn
    dx = np.where(valid, x - mx[:, None], 0.0)
    dy = np.where(valid, y - my[:, None], 0.0)
    sxx = (dx * dx).sum(1)
    syy = (dy * dy).sum(1)
    sxy = (dx * dy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    tiny = 1e-12
    r = np.where(sxx <= tiny * np.maximum(syy, tiny), 0.0, r)
    r = np.where((n < 3) | (syy <= tiny), np.nan, r)
    return np.clip(r, -1.0, 1.0).astype(np.float32)


def sim_score_all(token_sum: np.ndarray, token_count: np.ndarray, m2: np.ndarray, block: int = 128) -> np.ndarray:
    """float32 [N] the token lookup correlation over *every* token instead of top-k + random samples.

    The same per-token-mean "explanation", fitted on one half of the contexts and scored on the
    other (2-fold by context parity), but the Pearson correlation is taken over all positions of
    the store, exactly, from the pass-1 sums alone: with x the cross-fitted prediction of a
    position and y its activation, sum (x - mean x) y and sum (x - mean x)^2 are sums over tokens
    of per-(half, token) counts and activation sums, and sum (y - mean y)^2 is the neuron's M2.
    This is the exhaustive form of OpenAI's "random-only" scoring (Bills et al. 2023), where the
    top-and-random ``sim_score`` mostly asks whether the top firings stand out from random tokens
    (easy, so it saturates on small models); here the bulk of ordinary tokens decides, so it
    separates neurons that one token explains from those it does not. A token never seen in the
    fitting half is predicted as that half's mean. NaN when either half is empty or the activation
    is constant; 0 when the prediction is constant.

    token_sum: [2, V, N] activation sums per (context parity, token); token_count: [2, V] (the tokens
    may be any subset holding every token seen, e.g. a PartialIndex's rows: ``sim_score_all(p.token_sum,
    p.token_count[:, p.token_ids], p.m2)``; a token never seen adds nothing);
    m2: [N] sum of squared deviations of all activations.
    """
    two, V, N = token_sum.shape
    c = token_count.astype(np.float64)  # [2, V]
    n_half = c.sum(1)  # [2]
    n = n_half.sum()
    out = np.full(N, np.nan, np.float32)
    if n < 3 or (n_half == 0).any():
        return out
    seen = c > 0
    cc = np.maximum(c, 1.0)[:, :, None]
    for j0 in range(0, N, block):
        S = np.asarray(token_sum[:, :, j0:j0 + block], np.float64)  # [2, V, b]
        mu_half = S.sum(1) / n_half[:, None]  # [2, b] each half's mean activation
        pred = np.where(seen[:, :, None], S / cc, mu_half[:, None, :])  # [2, V, b] fitted on each half
        pe = pred[::-1]  # pe[h] = the prediction for positions of half h (fitted on the other half)
        xbar = (pe * c[:, :, None]).sum((0, 1)) / n  # [b]
        d = pe - xbar  # [2, V, b]
        sxy = (d * S).sum((0, 1))
        sxx = (d * d * c[:, :, None]).sum((0, 1))
        syy = np.asarray(m2[j0:j0 + block], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = sxy / np.sqrt(sxx * syy)
        tiny = 1e-12
        r = np.where(sxx <= tiny * np.maximum(syy, tiny) * n, 0.0, r)
        r = np.where(syy <= tiny, np.nan, r)
        out[j0:j0 + block] = np.clip(r, -1.0, 1.0)
    return out


# ---- distributions per model ---------------------------------------------------------------------


def describe_distribution(values: np.ndarray, threshold: float) -> dict:
    v = np.asarray(values, np.float64)
    fin = v[np.isfinite(v)]
    out = {"n": int(v.size), "n_valid": int(fin.size)}
    if fin.size:
        q = np.quantile(fin, [0.1, 0.25, 0.5, 0.75, 0.9])
        out.update(mean=float(fin.mean()), p10=float(q[0]), p25=float(q[1]), median=float(q[2]),
                   p75=float(q[3]), p90=float(q[4]), share_above=float((fin >= threshold).mean()))
    else:
        out.update(mean=float("nan"), p10=float("nan"), p25=float("nan"), median=float("nan"),
                   p75=float("nan"), p90=float("nan"), share_above=float("nan"))
    out["threshold"] = threshold
    out["hist_counts"] = np.histogram(np.clip(fin, 0.0, 1.0), bins=SUMMARY_BINS)[0].tolist()
    out["hist_edges"] = SUMMARY_BINS.tolist()
    return out


DISPLAY_NAMES = {"gelu": "GeLU", "solu_ln": "SoLU-LN", "solu": "SoLU", "relu": "ReLU", "gelu_new": "GeLU"}


def model_name(store) -> str:
    """A short name for a store's model: its activation function (e.g. 'gelu', 'solu_ln'), else the
    store's folder name."""
    cfg = store.model_config or {}
    return str(cfg.get("act_fn") or Path(store.path).name)


def display_name(act_fn: str) -> str:
    """How reports write an activation function: 'solu_ln' -> 'SoLU-LN'."""
    return DISPLAY_NAMES.get(act_fn, act_fn)


__all__ = ["token_rule", "token_rule_score", "sim_score", "sim_score_all", "describe_distribution",
           "model_name", "display_name", "SCORES", "THRESHOLDS"]
