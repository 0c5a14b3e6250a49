"""Models (GeLU / SoLU / SoLU-LN), corpus and tokenizer, training, checkpoints, recording.

Never imports Qt or neurobrowse (checked by tests/test_layering.py).
"""
