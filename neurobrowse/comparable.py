"""Whether two stores can be compared at all: the check `compare` runs before any comparison.

The comparison (neurobrowse.verdict / the compare window) puts two models' shares of interpretable
neurons side by side and says whether one is ahead. That only means something when both were indexed
the same way over the same kind of text: a top-1 index scored against a top-32 one, two tokenizers,
two corpora or a 32x difference in tokens all move the scores by themselves. ``comparability`` lists
what differs, split into gross differences (``compare`` refuses them unless ``--allow-mismatch``) and
smaller ones (a warning).
"""

from __future__ import annotations

TOKEN_RATIO_REFUSE = 4.0  # token counts further apart than this are refused
TOKEN_RATIO_WARN = 1.5  # and further apart than this warned about


def _corpus_id(m: dict):
    return m.get("text_sha256") or m.get("corpus_manifest_hash")


def _index_k(st) -> set:
    ks = set()
    for h in st.hooks:
        attrs = st.index_state(h)
        if attrs.get("complete"):
            ks.add(attrs.get("k"))
    return ks


def comparability(a, b) -> tuple[list[str], list[str]]:
    """(gross differences, smaller ones) between the open Stores ``a`` and ``b``, each a sentence."""
    gross, minor = [], []
    ma, mb = a.manifest, b.manifest
    ka, kb = _index_k(a), _index_k(b)
    if ka and kb and ka != kb:
        gross.append(f"they were indexed with another k (top-{'/'.join(map(str, sorted(ka)))} vs "
                     f"top-{'/'.join(map(str, sorted(kb)))} firings per neuron): the scores are judged on other "
                     "numbers of firings; index both with the same --k (`neurobrowse index STORE --k K --force`)")
    if ma.get("tokenizer_hash") and mb.get("tokenizer_hash") and ma["tokenizer_hash"] != mb["tokenizer_hash"]:
        gross.append("their models use different tokenizers: the token-level scores are not on the same scale")
    ca, cb = _corpus_id(ma), _corpus_id(mb)
    if ca and cb and ca != cb:
        gross.append("they were recorded on different text (corpus or --text differ): record both on the same text")
    na, nb = int(a.n_tokens), int(b.n_tokens)
    ratio = max(na, nb) / max(1, min(na, nb))
    if ratio > TOKEN_RATIO_REFUSE:
        gross.append(f"their token counts differ {ratio:.0f}x ({na:,} vs {nb:,}): rarer firings reach the top lists "
                     "of the larger one; record both with the same --tokens")
    elif ratio > TOKEN_RATIO_WARN:
        minor.append(f"their token counts differ {ratio:.1f}x ({na:,} vs {nb:,})")
    if int(a.context_len) != int(b.context_len):
        minor.append(f"their contexts differ ({a.context_len} vs {b.context_len} tokens)")
    return gross, minor


__all__ = ["comparability"]
