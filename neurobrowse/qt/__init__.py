"""The PySide6 + pyqtgraph desktop app. Widgets talk to neurobrowse.browsing, never to zarr or numba."""
