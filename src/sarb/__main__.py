"""``python -m sarb`` does what the ``sarb`` console script does."""

import sys

from sarb.cli import main

sys.exit(main())
