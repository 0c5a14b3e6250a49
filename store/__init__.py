"""The on-disk activation store: schema, writer, reader, Numba indexers, labels, export.

Never imports torch, Qt, solu_core or neurobrowse (checked by tests/test_layering.py).
"""
