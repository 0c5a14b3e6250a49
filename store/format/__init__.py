"""The on-disk format of a store: ``schema`` (layout, manifest, names), ``chunkio`` (one chunk file:
encode, checksum, atomic write), ``writer`` (``StoreWriter``), ``reader`` (``Store``, checked reads),
``pipeline`` (recording's writer thread), ``atomic`` (atomic folder and file swaps), ``verify``."""
