"""``python -m cmvae``: the same command line as ``cmvae``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
