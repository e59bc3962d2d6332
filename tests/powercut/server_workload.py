"""The server's workloads for the power-cut test, run once each under the tracer (shim.c).

    python -m powercut.server_workload FOLDER INFO.json book     authorisations and a sync
    python -m powercut.server_workload FOLDER INFO.json settle   a settlement run, its files

FOLDER is the server's data folder (its SQLite database `hcard.db`, WAL, group commit);
INFO.json (outside it) says which terminals and cards `town` (in the test) made there.

`book`: two tills authorise online payments at the same time through the real service
(`services.authorise.authorise`, the group writer commits them together), one is declined,
then each till syncs its whole chain (`services.sync.sync`: its online records, offline
payments, a void). A marker is written only after the service returned: what the server
answered to the till. `settle`: `services.settlement.create_run` for last month (one
transaction: bookings, lines, the bank file stored), then the bank file and the statements
written to disk by `hcard-server settle file|statements` (settle_cli), a marker after each
returned. (The statement PDFs, `make_statements`, are rows written one commit each like
any other; they are left out for time: each rendering starts a process.)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from powercut.replay import MARKERS

from hcard.encoding import canonical_bytes
from hcard.records import Record, make_record
from hcard.server import cli
from hcard.server.context import Context
from hcard.server.services import authorise, settlement
from hcard.server.services import sync as sync_service
from hcard.server.services.terminals import SignedRequest, Terminal
from hcard.server.services.users import Staff
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

DATABASE = "hcard.db"
BANK_FILE = "bank.xml"
STATEMENTS = "statements"


def settings(folder: Path) -> Settings:
    return Settings.build(folder, f"sqlite:///{folder / DATABASE}")


@dataclass
class Till:
    """A till's side of the protocol: its key and the head of its chain on the server."""

    terminal_id: int
    merchant_id: int
    key: Ed25519PrivateKey
    seq: int
    prev: str

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Till:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(info["key"]))
        return cls(info["terminal_id"], info["merchant_id"], key, info["seq"], info["prev"])

    def record(self, kind: str, body: dict[str, Any]) -> Record:
        self.seq += 1
        record = make_record(self.key, self.terminal_id, self.seq, self.prev, kind, body)
        self.prev = record.hash
        return record

    def request(self, ctx: Context) -> SignedRequest:
        """A request as `authenticate` hands it to the service (signature checked)."""
        terminal = Terminal(self.terminal_id, self.merchant_id, self.key.public_key())
        return SignedRequest(ctx, terminal, b"", secrets.token_hex(16))


def payment(till: Till, card: list[Any], amount_cents: int, mode: str, counter: int) -> Record:
    number, uid = card
    body = {
        "card": number,
        "uid": uid,
        "amount_cents": amount_cents,
        "tip_cents": 0,
        "mode": mode,
        "counter": counter,
        "purse_cents": 0,
    }
    return till.record("payment", body)


def wire(payload: dict[str, Any]) -> Any:
    """The JSON the router hands the service."""
    return json.loads(canonical_bytes(payload))


def book(ctx: Context, info: dict[str, Any], shown: Any) -> None:
    tills = [Till.from_info(t) for t in info["tills"]]
    cards = info["cards"]
    chains: list[list[Record]] = [[] for _ in tills]

    def online(index: int) -> None:
        till = tills[index]
        for n, amount_cents in enumerate((300, 450, 99_999)):  # the last: too much, declined
            record = payment(till, cards[index], amount_cents, "online", counter=n + 1)
            chains[index].append(record)
            body, _head = authorise.authorise(
                ctx, till.request(ctx), wire({"record": record.to_wire()})
            )
            answer = json.loads(body)
            shown(f"authorised {till.terminal_id} {record.seq} {answer['outcome']}")

    threads = [threading.Thread(target=online, args=(i,)) for i in range(len(tills))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, till in enumerate(tills):
        chain = chains[index]
        chain.append(payment(till, cards[index], 120, "offline", counter=4))
        chain.append(payment(till, cards[2], 80, "offline", counter=index + 1))
        first = chain[0]
        chain.append(
            till.record(
                "void",
                {"card": first.body["card"], "voids_seq": first.seq, "amount_cents": 300},
            )
        )
        answer = sync_service.sync(
            ctx, till.request(ctx), wire({"records": [r.to_wire() for r in chain]})
        )
        for result in answer["results"]:
            shown(f"synced {till.terminal_id} {result['seq']} {result['status']}")
    info["chains"] = [[record.to_wire() for record in chain] for chain in chains]


def settle(ctx: Context, folder: Path, info: dict[str, Any], shown: Any) -> None:
    actor = Staff(
        user_id=info["admin_id"], username=info["admin"], role=Role.ADMIN, merchant_id=None
    )
    run = settlement.create_run(ctx, actor, settlement.Period.month(info["month"]))
    run_id = int(str(run["run_id"]))
    shown(f"run {run_id}")
    for argv in commands(folder, run_id, info["admin"]):
        if cli.main(argv) != 0:
            raise SystemExit(f"{argv} failed")
        shown(f"written {argv[1]}")


def commands(folder: Path, run_id: int, user: str) -> list[list[str]]:
    """The operator's `hcard-server settle file|statements` for run `run_id`."""
    common = [
        "--user",
        user,
        "--data-dir",
        str(folder),
        "--database-url",
        settings(folder).database_url,
    ]
    out = ["--format", "csv", "--out", str(folder / STATEMENTS)]
    return [
        ["settle", "file", str(run_id), "--out", str(folder / BANK_FILE), *common],
        ["settle", "statements", str(run_id), *out, *common],
    ]


def main() -> int:
    folder, info_path, what = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    info = json.loads(info_path.read_text())
    markers = os.open(folder / MARKERS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lock = threading.Lock()

    def shown(line: str) -> None:
        with lock:
            os.write(markers, f"{line}\n".encode())

    ctx = Context.open(settings(folder))
    if what == "book":
        book(ctx, info, shown)
    else:
        settle(ctx, folder, info, shown)
    ctx.engine.dispose()  # the last connection checkpoints the WAL: cut there too
    shown("closed")
    info_path.write_text(json.dumps(info))  # outside the folder: what the tills would resend
    return 0


if __name__ == "__main__":
    sys.exit(main())
