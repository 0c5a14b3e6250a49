"""The PySide6 + pyqtgraph desktop app. Widgets talk to neurobrowse.state, never to zarr or numba."""
