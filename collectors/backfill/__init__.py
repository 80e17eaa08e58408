"""History from any ccxt exchange into RAW:
``python -m collectors.backfill --venue V --symbol S --since T [--until T] --timeframe 1m
[--trades] [--checkpoint PATH]`` (also ``jetmarket backfill ...``, ``make backfill``).

Candles (default) or trades (``--trades``) in exactly ``[since, until)`` become raw frames on
``raw.<venue>.ccxt-hist-ohlcv-<tf>.<unified>`` / ``raw.<venue>.ccxt-hist-trades.<unified>``,
the same ccxt unified JSON the poller publishes, so the normalizer and sink need nothing new.

The range end is fixed when a job first starts (``--until`` or now, never past the last
closed candle) and stored in a checkpoint file, rewritten atomically after each page that
JetStream acked; a kill -9 loses at most the page in flight. Re-running a page is harmless:

- candle pages lie on a fixed grid from ``since`` (``limit`` candles each) and trade pages
  follow the venue's own paging from a cursor (time + ids seen at that ms), so the same page
  has the same bytes and the same ``Nats-Msg-Id`` and RAW drops the copy (duplicate window);
- each frame carries the job (``Jm-Backfill``) and its position before and after
  (``Jm-Backfill-From``, ``Jm-Cursor``); at start, when the newest frame in RAW on the job's
  subject starts where the checkpoint stands, the checkpoint moves past it, so a page acked
  just before a kill is not sent again even after the duplicate window;
- downstream, closed candles and trades keep their natural ids (``1m:<open>:c``, trade id)
  whichever process published them.
A job whose checkpoint says done publishes nothing; delete the checkpoint to fetch again.
"""

from collectors.backfill.cli import main, parse_time
from collectors.backfill.markets import resolve_symbol

__all__ = ["main", "parse_time", "resolve_symbol"]
