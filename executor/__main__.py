"""``python -m executor``: order commands to venues, with timeouts, reconciliation, risk, PnL.

Consumes exec.cmd.<account> (and answers ctl.exec.<account> requests), publishes
exec.evt.<account>.<venue>.<symbol> and exec.pos.<account>. One paper account named
"paper" unless [executor.accounts.<name>] configures others (venue = "paper" or "ccxt")."""

from __future__ import annotations

from executor.worker import main
from streams.bus.runtime import parse_args, run

if __name__ == "__main__":
    parse_args("executor", __doc__)
    run("executor", main)
