"""neurobrowse: the CLI and the desktop app."""

__version__ = "0.1.0"
