"""Entry point of the PyInstaller build: the desktop app (`neurobrowse-app`), not the batch CLI.

    neurobrowse [STORE [STORE_B]] [--smoke-test] [--offscreen --screenshot PNG]
"""

import sys

from neurobrowse.qt.app import main

if __name__ == "__main__":
    sys.exit(main())
