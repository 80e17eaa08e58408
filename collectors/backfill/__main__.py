"""``python -m collectors.backfill ...`` (see collectors/backfill/__init__.py)."""

import sys

from collectors.backfill.cli import main

sys.exit(main())
