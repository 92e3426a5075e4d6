"""``python -m minikfac ...`` runs the command line (see :mod:`minikfac.cli`)."""

import sys

from minikfac.cli import main

sys.exit(main())
