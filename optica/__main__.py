"""``python -m optica`` is the ``optica`` command."""

import sys

from optica.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
