"""``python -m bootstrap.launch``: what ``scripts/ec2_render.sh`` runs (``bootstrap.launch.cli``)."""

import sys

from bootstrap.launch.cli import main

sys.exit(main())
