"""``python -m hubkit``: the same command line as the ``hubkit`` console script."""

import sys

from hubkit.cli import main

sys.exit(main())
