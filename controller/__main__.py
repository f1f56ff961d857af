"""``python -m controller`` runs the ``sluice`` command line."""

import sys

from controller.cli import main

sys.exit(main())
