"""Measures of neurons from index arrays: ``columns`` (every statistic and score, named once),
``snippets`` (context windows), ``scores`` (token rule, token lookup correlation), ``explain`` (rule
explanations), ``tokens_display`` (readable token strings)."""
