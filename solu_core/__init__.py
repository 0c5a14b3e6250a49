"""Models (GeLU / SoLU / SoLU-LN), corpus and tokenizer, training, checkpoints, recording.

``model`` is our transformer; ``loading`` loads any model to record (a checkpoint, a Hugging Face folder, a
TransformerLens name, a model in memory) behind one interface (``load_model``).

Never imports Qt or neurobrowse (checked by tests/test_layering.py).
"""
