"""Entry point: ``python -m controller.local.serving --model-name NAME --storage-uri URI``."""

from controller.local.serving.server import main

raise SystemExit(main())
