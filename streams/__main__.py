"""``python -m streams <command>``: the same commands as the ``jetmarket`` script."""

import sys

from streams.cli import main

sys.exit(main())
