"""Files for other tools: ``neurons`` (labeled neuron sets as JSONL, CSV and neuron-explainer records)
and ``label_files`` (label files written, read back and imported)."""
