"""``python -m digits``: the same as the ``digits`` command."""

import sys

from digits.cli import main

sys.exit(main())
