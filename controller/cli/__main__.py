"""``python -m controller.cli`` runs the ``sluice`` command line, like ``python -m controller``."""

import sys

from controller.cli.entry_point import main

sys.exit(main())
