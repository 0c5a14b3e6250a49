"""`neurobrowse replicate`: the SoLU paper's size sweep as one resumable pipeline, and its report.

neurobrowse.replicate.pipeline runs the steps (corpus, training, the random control, recording with
indexing, one blinded study per size, GeLU's loss-vs-width curve), neurobrowse.replicate.report turns the
folder into report.txt / report.json / report.png, neurobrowse.replicate.presets holds the sweep presets
and the up-front memory check. See docs/replicate.md.
"""
