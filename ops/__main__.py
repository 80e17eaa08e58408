"""``python -m ops <command>``: the same commands as the ``jetmarket`` script."""

import sys

from ops.cli import main

sys.exit(main())
