"""The blinded rating study of the SoLU paper (section 6.1), without Qt.

``new_study`` draws a random sample of neurons from each store (60 per model by default, as in the
paper), shuffles them together with a recorded seed and writes a study folder::

    STUDY/study.json     what raters see: blinded item ids and, per item, its top snippets
                         (token strings + activations). No model, store, neuron id, statistic or score.
    STUDY/key.json       the unblinding key: item id -> store, run UUID, model, hook, neuron and the
                         automated scores; plus the seed. Only ``study_report`` opens it.
    STUDY/ratings.sqlite every rating: rater, item id, verdict, seconds spent, time. SQLite (WAL,
                         BEGIN IMMEDIATE) so several raters can rate the same study at once; each
                         rater sees only their own progress. A re-rating appends; the latest counts.
    STUDY/report/        written by ``study_report``: report.txt, report.csv, report.png.

Rating is done in the app (``StudySession`` drives neurobrowse.qt.study_window.StudyWindow) or
scripted with ``rate_from_answers`` (a CSV ``item_id,verdict`` or a JSON ``{item_id: verdict}``).

The report (the only place the models are unblinded) counts neurons, not ratings: each item's
verdict is the raters' majority (a tie is unsure), and per model it gives the share of neurons whose
verdict is "interpretable" (unsure counts as not) with a 95% Wilson interval and a two-sided Fisher
exact test of GeLU against SoLU-LN on those neuron counts, so two raters do not double the sample.
Secondary lines: every rating pooled, per-rater shares, and the Fisher test on pooled ratings.
Agreement between raters: Cohen's kappa for two raters, Fleiss' kappa for more (over the items every
rater rated, three categories). And the ROC AUC with which every automated score (AUC_SCORES: the
rule explanation score, token-rule score and token lookup correlation, read from the stores at
report time so scores added later are checked too) predicts the neurons' majority verdict
(unsure neurons left out). ``study_report`` also writes report.json and records the study inside the
stores it covers (``registry.record_in_stores``) so that `compare` can lead with it (``reported_study``),
and lists the calibrated share of random-model controls found beside those stores.

The modules, in the order a study goes: ``folder`` (study.json and key.json, read back), ``draw``
(``new_study``), ``ratings`` (``RatingsDB``), ``session`` (``StudySession``, ``rate_from_answers``),
``results`` (``compute_report``: the statistics), ``report`` (the report files, ``study_report``),
``registry`` (reported studies, recorded in the stores, for `compare`).
"""
