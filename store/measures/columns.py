"""The per-neuron statistics of an index, as columns: the one list every view reads.

``Store.neuron_table`` builds one column per entry, the neuron table and the neuron page show them,
filters and sorts accept their names, the compare view counts the scores that pass their threshold,
the blinded study checks the scores against human verdicts and exports write them. Adding a
statistic the indexer writes (a per-neuron index array, see ``store.schema.INDEX_ARRAYS``) is one
``Column`` entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One per-neuron statistic."""

    name: str  # key in Store.neuron_table and NeuronView.stats; the word a filter expression uses
    header: str  # short column header in the neuron table
    title: str  # longer name: the neuron page's statistics, plots, exports' readers
    fmt: str  # format spec for display, e.g. ".3f"; "" for text
    array: str | None = None  # per-neuron index array it is read from; None: derived by Store.neuron_table
    score: bool = False  # an automated interpretability score (compared between models, checked by the study)
    threshold: float | None = None  # scores: a neuron "passes" when its score is at least this
    in_table: bool = False  # shown as a column of the neuron table (every column can be filtered and exported)
    numeric: bool = True  # False: text (filters take ~ regex and =)
    tip: str = ""  # tooltip of the table header
    # read with the rule explanations (store.measures.explain): NaN / '' on an index made before them
    explained: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("neuron", "Neuron", "neuron", "d", in_table=True),
    Column("max_act", "Max act", "max activation", ".3g", in_table=True),
    Column("min_act", "Min act", "min activation", ".3g"),
    Column("mean", "Mean", "mean", ".3g", array="mean"),
    Column("var", "Variance", "variance", ".3g", array="var"),
    Column("skewness", "Skewness", "skewness", ".3g", array="skewness"),
    Column("kurtosis", "Kurtosis", "excess kurtosis", ".3g", array="kurtosis", in_table=True,
           tip="Excess kurtosis of the activation distribution: high = sparse, peaky"),
    Column("density", "Density", "density (> 0)", ".3f", array="density", in_table=True,
           tip="Share of tokens where the neuron is active (> 0)"),
    # 0.8: the paper's "at least 80% of the strongest firings follow one rule"
    Column("token_rule_score", "Token-rule", "token-rule score", ".3f", array="token_rule_score", score=True,
           threshold=0.8, in_table=True, tip="How well one token explains the neuron's firing (store.measures.scores)"),
    Column("sim_score", "Lookup", "token lookup correlation", ".3f", array="sim_score", score=True, threshold=0.5,
           in_table=True, tip="Token lookup correlation (formerly 'simulation score'; not OpenAI's explain-and-"
           "simulate score): correlation of the activations with a per-token-mean prediction fitted on the other "
           "half of the contexts, over top-k + random samples (store.measures.scores)"),
    Column("top_token", "Top token", "top token", "", in_table=True, numeric=False),
    # 0.7: F2 of coverage 0.8 (the paper's 80%) with precision 0.5 (store.measures.explain.PASS_SCORE)
    Column("explain_score", "Rule score", "rule explanation score", ".3f", array="explain_score", explained=True,
           score=True, threshold=0.7, in_table=True,
           tip="How well the automatic rule explanation fits the top firings: F2 of its coverage of the distinct "
           "top firings and its precision (store.measures.explain; docs/scores.md)"),
    Column("explain_coverage", "Coverage", "explanation coverage", ".3f", array="explain_coverage", explained=True),
    Column("explain_precision", "Precision", "explanation precision", ".3f", array="explain_precision",
           explained=True),
    Column("explanation", "Rule", "rule explanation", "", numeric=False, explained=True, in_table=True,
           tip="The best simple rule over the distinct top firings, with its coverage and precision "
               "(store.measures.explain)"),
    # SoLU-LN only: derived by Store.neuron_table from both sides of the LayerNorm (NaN elsewhere)
    Column("ln_overlap", "LN overlap", "top firings kept across the LayerNorm", ".2f", in_table=True,
           tip="SoLU-LN: share of the distinct top firings on this side of the LayerNorm that are also top firings "
           "on the other side (hook_mid vs hook_post); low = the LN changes what the neuron fires on most. "
           "Filter e.g. ln_overlap < 0.5"),
    # a dictionary's features only (store.format.features; NaN for neurons)
    Column("max_cos", "Neuron cos", "largest |cosine| with one neuron", ".2f",
           tip="A feature's decoder direction against each neuron's basis direction: 1 = one neuron, "
           "< 0.5 = spread over many (store.format.dictionary.alignment)"),
    Column("hidden_share", "Hidden", "top firings where no neuron fires strongly", ".2f",
           tip="Share of a feature's distinct top firings at tokens where no neuron of its hook reaches half its "
           "maximum: a candidate for a feature the neurons hide (store.format.features)"),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
SCORES: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.score)
THRESHOLDS: dict[str, float] = {c.name: float(c.threshold) for c in COLUMNS if c.score}
INDEX_SCALARS: tuple[str, ...] = tuple(c.array for c in COLUMNS if c.array and not c.explained)  # read whole
EXPLAIN_SCALARS: tuple[str, ...] = tuple(c.array for c in COLUMNS if c.array and c.explained)
NUMERIC: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.numeric)
TEXT: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.numeric)
STATISTICS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.name != "neuron")  # a neuron's own figures

# Short names accepted in filter expressions.
ALIASES = {"max": "max_act", "min": "min_act", "act": "max_act", "token_rule": "token_rule_score",
           "rule": "token_rule_score", "sim": "sim_score", "lookup": "sim_score",  # one name: docs/code-layout.md
           "explain": "explain_score", "rule_score": "explain_score", "coverage": "explain_coverage",
           "precision": "explain_precision", "rule_text": "explanation", "ln": "ln_overlap", "overlap": "ln_overlap",
           "kurt": "kurtosis", "token": "top_token", "top": "top_token", "n": "neuron",
           "cos": "max_cos", "hidden": "hidden_share", "feature": "neuron", "f": "neuron"}


def format_value(name: str, value) -> str:
    """A statistic as the views show it: the column's format; NaN / missing as '—'."""
    col = BY_NAME.get(name)
    if value is None:
        return "—"
    if col is None or not col.numeric:
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "—"
    return format(int(v), col.fmt) if col.fmt == "d" else format(v, col.fmt)


__all__ = ["Column", "COLUMNS", "BY_NAME", "SCORES", "THRESHOLDS", "INDEX_SCALARS", "EXPLAIN_SCALARS", "NUMERIC",
           "TEXT", "STATISTICS", "ALIASES", "format_value"]
