"""``python -m controller.schemas CRD.yaml`` refreshes the packaged InferenceService schema."""

import sys

from controller.schemas import main

sys.exit(main(sys.argv[1:]))
