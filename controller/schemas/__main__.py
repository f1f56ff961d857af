"""``python -m controller.schemas CRD.yaml`` refreshes a packaged schema
(InferenceService or InferenceGraph, told by the CRD's kind)."""

import sys

from controller.schemas import main

sys.exit(main(sys.argv[1:]))
