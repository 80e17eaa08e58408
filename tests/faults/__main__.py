"""``python -m tests.faults [--short] [--rate R] [--keep DIR]``: run the fault suite, print
the table; exit status 1 when any row lost or duplicated a trade, a hole has no gap
recorded, or a book did not converge to the venue's true book."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from tests.faults.suite import Result, run_suite, table


def verdict(res: Result) -> list[str]:
    bad = [f"{r.fault}: lost {r.lost}" for r in res.rows if r.lost]
    bad += [f"{r.fault}: duplicated {r.duplicated}" for r in res.rows if r.duplicated]
    bad += [f"{r.fault}: {r.uncovered} missed trades without a gap" for r in res.rows
            if r.uncovered]  # fmt: skip
    bad += [f"book {s}: {why}" for s, why in res.books_ok.items() if why != "ok"]
    bad += [f"{r.fault}: {p}" for r in res.rows for p in r.problems]
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.faults")
    ap.add_argument("--short", action="store_true", help="one of each fault, 3 s outage (CI)")
    ap.add_argument("--rate", type=float, default=None, help="offered trades/s")
    ap.add_argument("--keep", type=Path, default=None, help="work dir to keep (logs, stores)")
    ap.add_argument(
        "--loss",
        action="store_true",
        help="only the loss faults (store full, 20 MB frame, NATS down past the buffer, "
        "150-day backfill); --short makes their outages shorter",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="jm-faults-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        res = asyncio.run(run_suite(work, short=args.short, rate=args.rate, loss_only=args.loss))
    print(table(res.rows))
    print(f"books equal to the venue's true book: {res.books_ok}; {res.seconds:.0f}s")
    bad = verdict(res)
    for b in bad:
        print("FAIL", b)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
