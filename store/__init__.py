"""The on-disk activation store, in rooms (each imports only the rooms below it; pyproject.toml's
import-linter ``layers`` contract says so):

    export     files for other tools: labeled neuron sets (JSONL, CSV, neuron-explainer), label files
    labels     human labels of neurons in SQLite (beside index: neither imports the other)
    index      building the index: Numba kernels, partial results and their merges, the passes,
               the index group (its one writer), indexing while recording, on Dask
    format     the store on disk: chunk files, the writer, the reader (``Store``), verify, whole-file
               writes and folder swaps (``format.atomic``)
    measures   pure functions of index arrays: columns, snippets, scores, rule explanations

and two modules every room speaks: ``schema`` (the layout: names, shapes, dtypes, codecs, the
manifest) and ``errors`` (the exceptions a user sees).

Never imports torch, Qt, solu_core or neurobrowse (checked by tests/test_layering.py).
"""
