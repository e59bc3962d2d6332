"""A till in a subprocess for the kill -9 test: pays in a loop, prints each final result.

    python kill_driver.py STATE_DIR READER_PATH          pay until killed
    python kill_driver.py STATE_DIR READER_PATH --settle  recover, sync everything, exit

"APPROVED <seq> <receipt number>" is printed (and flushed) only after `pay` returned it as
approved: the moment the till would show it to the cashier.
"""

import random
import sys
import time
from pathlib import Path

from hcard.terminal import journal as jr
from hcard.terminal.core import TerminalTill
from hcard.terminal.till import Outcome


def main() -> int:
    state, reader = Path(sys.argv[1]), sys.argv[2]
    settle = "--settle" in sys.argv
    till = TerminalTill(state, reader_path=reader, start_sync=not settle, sync_interval_s=0.2)
    print(f"READY {till.recovered}", flush=True)
    if settle:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            till.sync_now()
            pending = till.journal.entries(states=(jr.State.UNSHOWN, jr.State.INTENT))
            if till.journal.unsent_count() == 0 and not pending:
                print("SETTLED", flush=True)
                till.close()
                return 0
            time.sleep(0.2)
        pending = till.journal.entries(states=(jr.State.UNSHOWN, jr.State.INTENT))
        print(
            f"NOT SETTLED unsent={till.journal.unsent_count()}"
            f" pending={[(e.record.seq, e.state.value) for e in pending]}"
            f" link_online={till.link.online}",
            flush=True,
        )
        return 1
    while True:
        result = till.pay(random.randint(1, 99), card_timeout_s=10)
        if result.outcome == Outcome.APPROVED:
            sys.stdout.write(f"APPROVED {result.seq} {result.receipt_no}\n")
            sys.stdout.flush()
        else:
            print(f"NOT {result.outcome.value} {result.code}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
