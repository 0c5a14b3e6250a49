"""The app's pure-Python browsing state (no Qt): requests, navigation, filters, search, merging, shading,
and the GeLU-vs-SoLU comparison, on the real tiny stores."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from neurobrowse.browsing.navigation import Bookmarks, History, paired_hook, step_layer, step_neuron
from neurobrowse.browsing.cancellation import Cancelled, LatestRequests
from neurobrowse.browsing.filtering import ContextSearch, FilterError, apply_filter, parse_filter
from store.errors import NeurobrowseError
from neurobrowse.compare import compare_stores
from neurobrowse.browsing.pages import load_page, merge_snippets
from neurobrowse.snippet_text import shade_rgb
from neurobrowse.browsing.navigation import NeuronRef
from store import schema


def test_newer_request_cancels_older_and_only_newest_is_current():
    reqs = LatestRequests()
    a = reqs.new("neuron")
    b = reqs.new("neuron")
    other = reqs.new("table")
    assert a.cancelled.is_set() and not reqs.is_current(a)
    assert reqs.is_current(b) and reqs.is_current(other)
    with pytest.raises(Cancelled):
        a.check()
    b.check()  # still current: no exception
    reqs.done(b)
    assert "neuron" not in reqs.pending() and "table" in reqs.pending()
    reqs.cancel_all()
    assert other.cancelled.is_set()


def test_requests_are_thread_safe():
    reqs = LatestRequests()
    got = []

    def spam():
        for _ in range(500):
            got.append(reqs.new("x"))

    threads = [threading.Thread(target=spam) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    current = [r for r in got if reqs.is_current(r)]
    assert len(current) == 1 and len({r.id for r in got}) == 2000


def test_history_back_forward_and_branching():
    h = History()
    refs = [NeuronRef("blocks.0.mlp.hook_post", i) for i in range(4)]
    for r in refs[:3]:
        h.visit(r)
    h.visit(refs[2])  # revisiting the current neuron is not a step
    assert h.back() == refs[1] and h.back() == refs[0] and h.back() is None
    assert h.forward() == refs[1]
    h.visit(refs[3])  # drops the forward branch (refs[2])
    assert not h.can_forward() and h.back() == refs[1]


def test_bookmarks_roundtrip_and_skip_damaged_entries():
    b = Bookmarks()
    r = NeuronRef("blocks.0.mlp.hook_post", 7)
    assert b.toggle(r) and r in b
    back = Bookmarks.from_list(b.to_list() + [["bad"], None, ["blocks.0.mlp.hook_mid", "x"]])
    assert list(back) == [r]
    assert not b.toggle(r) and len(b) == 0


def test_step_neuron_follows_table_order_and_clamps():
    order = np.array([5, 2, 9, 0])
    assert step_neuron(order, 2, 1, 10) == 9
    assert step_neuron(order, 0, 1, 10) == 0  # end of the visible order: stays
    assert step_neuron(order, 5, -1, 10) == 5
    assert step_neuron(order, 3, 1, 10) == 5  # not visible: next visible number above
    assert step_neuron([], 3, 1, 10) == 4 and step_neuron([], 9, 1, 10) == 9


def test_step_layer_keeps_hook_kind_and_paired_hook():
    hooks = [schema.hook_name(layer, k) for layer in range(3) for k in ("hook_mid", "hook_post")]
    assert step_layer(hooks, "blocks.0.mlp.hook_post", 1) == "blocks.1.mlp.hook_post"
    assert step_layer(hooks, "blocks.2.mlp.hook_mid", 1) == "blocks.2.mlp.hook_mid"
    assert paired_hook(hooks, "blocks.1.mlp.hook_post") == "blocks.1.mlp.hook_mid"
    assert paired_hook(["blocks.0.mlp.hook_post"], "blocks.0.mlp.hook_post") is None


def test_filter_expressions_narrow_the_real_table(solu):
    hook = solu.hooks[-1]
    table = solu.neuron_table(hook)
    k, d, m = (float(np.nanmedian(table[c])) for c in ("kurtosis", "density", "max_act"))
    clauses = parse_filter(f"kurtosis > {k!r}, density < {d * 2 + 1e-3!r} and max >= {m!r}")
    mask = apply_filter(table, clauses)
    want = (table["kurtosis"] > k) & (table["density"] < d * 2 + 1e-3) & (table["max_act"] >= m)
    assert np.array_equal(mask, want) and 0 < mask.sum() < len(mask)
    tok = str(table["top_token"][int(np.argmax(table["max_act"]))])
    m2 = apply_filter(table, parse_filter(f"top_token = '{tok}'"))
    assert m2.sum() >= 1 and all(t == tok for t in table["top_token"][m2])
    # the token lookup correlation by its name, its short name and the table header's word; its old, misleading
    # names are refused with the column list (docs/code-layout.md: one name, sim_score)
    s = float(np.nanmedian(table["sim_score"]))
    masks = [apply_filter(table, parse_filter(f"{name} > {s!r}")) for name in ("sim_score", "sim", "lookup")]
    assert all(np.array_equal(x, table["sim_score"] > s) for x in masks) and 0 < masks[0].sum() < len(masks[0])
    for old in ("simulation", "similarity", "lookup_corr"):
        with pytest.raises(FilterError, match=rf"unknown column '{old}' in filter; columns: .*sim_score"):
            parse_filter(f"{old} > 0.5")


@pytest.mark.parametrize("bad", ["kurtosis >> 3", "nosuch > 1", "density ~ x", "label ~ (", "max > abc"])
def test_bad_filters_say_what_is_wrong(bad):
    with pytest.raises(FilterError) as e:
        parse_filter(bad)
    assert str(e.value)


def test_context_search_token_and_regex(solu):
    hook = solu.hooks[-1]
    search = ContextSearch.from_store(solu, hook)
    toks = np.asarray(solu.index_array(hook, "top_context_tokens")[...])
    firing = toks[:, :, schema.CONTEXT_BEFORE]
    # the most common firing token across all neurons
    ids, counts = np.unique(firing[firing >= 0], return_counts=True)
    texts_of = solu.token_strings(ids)
    tid = max((i for i, t in zip(ids, texts_of) if t.strip()), key=lambda i: counts[list(ids).index(i)])
    text = solu.token_strings([tid])[0]
    mask = search.search(re.escape(text.strip()), "token")
    vocab = solu.token_strings(list(range(int(solu.model_config["d_vocab"]))))
    same = {i for i, s in enumerate(vocab) if s.strip().lower() == text.strip().lower()}
    want = np.isin(firing, list(same)).any(axis=1)
    assert np.array_equal(mask, want) and 0 < mask.sum()
    rx = search.search(r"def\s+\w+", "regex")
    texts = search.texts()
    assert all(bool(re.search(r"def\s+\w+", texts[i], re.I)) == bool(rx[i]) for i in range(len(texts)))
    with pytest.raises(FilterError):
        search.search("(", "regex")


def test_merged_snippets_show_each_position_once_with_stored_values(solu):
    hook = solu.hooks[-1]
    merged_some = False
    for n in range(int(solu.d_mlp)):
        view = solu.neuron(hook, n, distinct=False)  # every stored firing: windows of one context overlap
        merged = merge_snippets(view.top)
        seen = [p for m in merged for p, g in zip(m.positions, m.greyed) if not g]
        assert len(seen) == len(set(seen)), "a token the model saw appears in two merged snippets"
        by_pos = {}
        for m in merged:
            for p, tok, a, g in zip(m.positions, m.token_ids, m.acts, m.greyed):
                if not g:
                    by_pos[p] = (tok, a)
        for s in view.top:
            start = s.position - s.center
            for i, (tok, a) in enumerate(zip(s.token_ids, s.acts)):
                if not s.ctx_lo <= i < s.ctx_hi:
                    continue
                assert by_pos[start + i][0] == tok
                assert by_pos[start + i][1] == pytest.approx(float(a))
            assert s.position in by_pos
        assert sum(m.n_merged for m in merged) == len(view.top)
        values = [m.value for m in merged]
        assert values == sorted(values, reverse=True)
        merged_some |= any(m.n_merged > 1 for m in merged)
        if merged_some and n > 10:
            break
    assert merged_some, "no neuron had overlapping top windows: the merge was never exercised"


def test_shading_is_red_for_positive_blue_for_negative():
    assert shade_rgb(0.0, 1.0) == (255, 255, 255)
    r, g, b = shade_rgb(1.0, 1.0)
    assert r == 255 and g == b < 60
    r2, g2, b2 = shade_rgb(0.5, 1.0)
    assert r2 == 255 and g < g2 < 255
    assert shade_rgb(-1.0, 1.0)[2] == 255 and shade_rgb(-1.0, 1.0)[0] < 60
    assert shade_rgb(5.0, 1.0) == shade_rgb(1.0, 1.0)  # clipped


def test_load_page_pairs_mid_and_post_for_solu_ln(solu, gelu):
    post = next(h for h in solu.hooks if h.endswith("hook_post"))
    page = load_page(solu, NeuronRef(post, 3))
    assert page.paired is not None and page.paired.hook.endswith("hook_mid")
    assert page.scale >= max(abs(s.value) for s in page.view.top)
    gpage = load_page(gelu, NeuronRef(gelu.hooks[0], 3))
    assert gpage.paired is None
    with pytest.raises(NeurobrowseError, match="does not exist"):
        load_page(solu, NeuronRef(post, 10_000))


def test_compare_real_stores(gelu, solu):
    cmp = compare_stores(gelu, solu)
    assert cmp.labels == ("gelu", "solu_ln")
    for table, st in zip(cmp.tables, (gelu, solu)):
        posts = [h for h in st.hooks if h.endswith("hook_post")]
        assert len(table["neuron"]) == len(posts) * int(st.d_mlp)
    for shares, table in zip(cmp.shares, cmp.tables):
        for r in shares:
            assert r.k == int((np.asarray(table[r.name]) >= r.threshold).sum())
            lo, hi = r.interval
            assert lo <= r.share <= hi
    assert "SoLU-LN" in cmp.verdict and "GeLU" in cmp.verdict and cmp.verdict.startswith("Calibrated rule proxy")
    ev = cmp.evidence
    assert ev.decided_by == "calibrated" and ev.outcome in ("holds", "does not hold", "undecided")
    assert any("rule explanation score" in line for line in ev.lines) and "'Holds' means" in ev.help
    assert [i.kind for i in ev.items][0] == "proxy" and ev.items[0].name == "Calibrated rule proxy"
