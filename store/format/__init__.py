"""The store on disk, written, read and checked (its layout is named in ``store.schema``):
``chunkio`` (one chunk file: encode, checksum, atomic write), ``writer`` (``StoreWriter``), ``reader``
(``Store``, checked reads), ``pipeline`` (recording's writer thread), ``atomic`` (folder swaps, the
per-hook index lock), ``verify`` (every chunk checked, repaired)."""
