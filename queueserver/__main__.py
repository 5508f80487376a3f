"""``python -m queueserver`` runs the ``queueserver`` command."""

import sys

from queueserver.cli import main

sys.exit(main())
