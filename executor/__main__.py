"""``python -m executor``: order commands to venues, with timeouts, reconciliation, risk, PnL.
``python -m executor report|algo`` (``jetmarket exec report|algo``): TCA report, algo commands.

Consumes exec.cmd.<account> (and answers ctl.exec.<account> requests), publishes
exec.evt.<account>.<venue>.<symbol> and exec.pos.<account>. One paper account named
"paper" unless [executor.accounts.<name>] configures others (venue = "paper" or "ccxt")."""

from __future__ import annotations

import sys

# ``jetmarket exec report|algo ...``: the commands of executor/report.py, not the worker
COMMANDS = ("report", "algo")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from executor.report import main as command

        sys.exit(command(sys.argv[1:]))
    from executor.worker import main
    from streams.bus.runtime import parse_args, run

    parse_args("executor", __doc__)
    run("executor", main)
