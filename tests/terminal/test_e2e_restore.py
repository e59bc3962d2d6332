"""A server restored from an older backup: the terminal sends again what the server lost.

Offline payments are resent; online payments and top-ups the till showed as approved go
marked `shown`, so the restored server books them instead of declining them as never seen,
also those the till had not yet uploaded when the server lost them; a till with nothing new
to send learns of the restore from the chain head the snapshot answer names.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.server import start_server
from fixtures.terminal import server_card

from hcard.server.backup import backup_sqlite
from hcard.terminal.till import Outcome


@dataclass
class _Town:
    """A server, a till behind a proxy with a card of 50,00 on its reader, synced, and the
    backup taken right after."""

    data_dir: Path
    server: Any
    proxy: Any
    till: Any
    number: str
    backup: Path

    def restore(self) -> None:
        """The office restores last night's backup over the stopped server's database and
        starts it again, behind the same address."""
        self.server.stop()
        database = self.data_dir / "hcard.db"
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        database.write_bytes(self.backup.read_bytes())
        self.server = start_server(self.data_dir)
        self.proxy.retarget(self.server.url)


@pytest.fixture
def town(tmp_path, card_emulator, terminal_factory, net_proxy) -> Iterator[_Town]:
    data_dir = tmp_path / "server"
    server = start_server(data_dir)
    made: list[_Town] = []
    try:
        proxy = net_proxy(server.url)
        terminal = terminal_factory(server, card_emulator.reader_path, proxy=proxy)
        number, image = server_card(server, 5_000)
        card_emulator.present(image)
        till = terminal.till()
        till.sync_now()
        backup = backup_sqlite(data_dir / "hcard.db", tmp_path / "backups")
        made.append(_Town(data_dir, server, proxy, till, number, backup))
        yield made[0]
    finally:
        (made[0].server if made else server).stop()


def test_terminal_resends_what_a_restored_server_lost(town):
    till, number = town.till, town.number
    # online, shown as approved: the backup has none of them
    paid = till.pay(500, card_timeout_s=10)
    assert (paid.outcome, paid.offline) == (Outcome.APPROVED, False)
    voided = till.pay(250, card_timeout_s=10)
    assert (voided.outcome, voided.offline) == (Outcome.APPROVED, False)
    assert till.void(voided.receipt_no).outcome == Outcome.APPROVED
    assert till.topup(1_000, card_timeout_s=10).outcome == Outcome.APPROVED
    till.link.down()
    for amount in (100, 200):  # the top-up's write counts toward the offline limit
        result = till.pay(amount, card_timeout_s=10)
        assert result.outcome == Outcome.APPROVED, result
    till.sync_now()
    assert till.journal.acked_seq() == 6
    assert town.server.staff.card(number)["balance_cents"] == 5_200

    town.restore()
    staff = town.server.staff
    assert staff.card(number)["balance_cents"] == 5_000  # the payments are gone
    till.link.down()
    assert till.pay(400, card_timeout_s=10).outcome == Outcome.APPROVED
    till.sync_now()
    assert till.journal.unsent_count() == 0
    # all the till showed is booked again: online ones too (sent as `shown`; the void
    # still reverses the voided one), not declined as unknown
    assert staff.card(number)["balance_cents"] == 4_800
    assert till.agent.last_error is None
    assert staff.ledger_check()["ok"]
    staff.block(number)  # a change the restored server numbers below the old ones
    till.sync_now()
    assert number in till.snapshot.state.deny


def test_shown_online_payments_not_yet_uploaded_are_booked_by_a_restored_server(town):
    """The server approved them and was restored before the till uploaded them: without
    `shown` it declined them as never authorised, and the customer paid for nothing."""
    till, number = town.till, town.number
    paid = till.pay(500, card_timeout_s=10)
    assert (paid.outcome, paid.offline) == (Outcome.APPROVED, False)
    assert till.topup(1_000, card_timeout_s=10).outcome == Outcome.APPROVED
    assert till.journal.unsent_count() == 2  # not uploaded yet

    town.restore()
    staff = town.server.staff
    assert staff.card(number)["balance_cents"] == 5_000
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert till.agent.last_error is None
    assert staff.card(number)["balance_cents"] == 5_500
    assert staff.ledger_check()["ok"]
    # each such booking is shown to the office: honest running never gets there
    kinds = [alert["kind"] for alert in staff.alerts()]
    assert kinds.count("shown_not_authorised") == 2, kinds


def test_a_till_with_nothing_to_send_resends_what_a_restored_server_lost(town):
    """Everything was acknowledged before the restore, and the till makes no new record:
    the snapshot answer's chain head tells it, and it sends again from the server's head."""
    till, number = town.till, town.number
    assert till.pay(500, card_timeout_s=10).outcome == Outcome.APPROVED
    till.link.down()
    assert till.pay(200, card_timeout_s=10).outcome == Outcome.APPROVED
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert town.server.staff.card(number)["balance_cents"] == 4_300

    town.restore()
    staff = town.server.staff
    assert staff.card(number)["balance_cents"] == 5_000
    till.sync_now()
    assert staff.card(number)["balance_cents"] == 4_300
    assert till.journal.unsent_count() == 0
    assert till.agent.last_error is None
    assert staff.ledger_check()["ok"]


def test_an_authorisation_answer_tells_the_till_of_a_restored_server(town):
    """The authorise answer names the till's chain head on the server too, so the first
    online payment after a restore takes back the acknowledgement of what the server lost,
    before the till writes the card: a top-up voided there counts as unsettled again
    (`Journal.unsettled_topups_cents`), where the server's balance holds it again. The
    next sync round sends the lost records."""
    till, number = town.till, town.number
    acked = till.journal.acked_seq()
    assert till.pay(500, card_timeout_s=10).outcome == Outcome.APPROVED
    till.sync_now()
    assert till.journal.acked_seq() == acked + 1

    town.restore()
    paid = till.pay(200, card_timeout_s=10)
    assert (paid.outcome, paid.offline, paid.balance_cents) == (Outcome.APPROVED, False, 4_300)
    assert till.journal.acked_seq() == acked  # from the answer, before any sync round
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert town.server.staff.card(number)["balance_cents"] == 4_300
    assert town.server.staff.ledger_check()["ok"]
