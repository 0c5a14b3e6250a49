"""Errors that name what is wrong and what to do. The CLI turns these into a message and exit 2;
the app into a dialog."""


class NeurobrowseError(Exception):
    """Base class: a user-facing problem (bad input, damaged file). The message says what and how to fix."""


class StoreError(NeurobrowseError):
    """A store that is missing, of another schema version, incomplete, or damaged."""


class CorruptChunkError(StoreError):
    """A chunk that fails its checksum or cannot be decoded; names the array and the chunk key."""


class CheckpointError(NeurobrowseError):
    """A checkpoint directory that is missing, truncated, corrupt or foreign."""


class CorpusError(NeurobrowseError):
    """Corpus input that cannot be used (missing path, empty corpus, ...)."""
