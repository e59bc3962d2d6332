"""Migrations applied to a database that holds data from an older release."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fixtures.server import fresh_postgres_database

from hcard.server.db import engine as db_engine
from hcard.server.db import migrate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "postgres":
        return fresh_postgres_database(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'hcard.db'}"


def test_0004_keeps_old_check_codes_lets_pending_tills_be_revoked_and_labels_german(
    database_url,
):
    engine = db_engine.make_engine(database_url)
    migrate.upgrade(engine, "0003")
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        run("INSERT INTO accounts (id, key, kind) VALUES (100, 'card:x', 'card')")
        run("INSERT INTO accounts (id, key, kind) VALUES (101, 'card:y', 'card')")
        run("INSERT INTO accounts (id, key, kind) VALUES (102, 'merchant:1', 'merchant')")
        run(
            "INSERT INTO cards (serial, number, uid, issuer_sig, account_id, created_s) VALUES "
            f"(1, '9276000000000018', '04aabbccddeeff', '{'ab' * 64}', 100, 0)"
        )
        run(
            "INSERT INTO cards (serial, number, account_id, created_s) "
            "VALUES (2, '9276000000000026', 101, 0)"
        )
        run(
            "INSERT INTO merchants (id, name, iban, account_id, created_s) "
            "VALUES (1, 'Laden', 'DE89370400440532013000', 102, 0)"
        )
        run(
            "INSERT INTO terminals (id, merchant_id, name, status, created_s) "
            "VALUES (7, 1, 'Kasse', 'pending', 0)"
        )
        # rows that refer to the tables the migration copies on SQLite
        run(
            "INSERT INTO terminals (id, merchant_id, name, status, public_key, created_s) "
            f"VALUES (8, 1, 'Kasse 2', 'active', '{'cd' * 32}', 0)"
        )
        for terminal_id in (7, 8):
            run(
                "INSERT INTO enrolment_codes (code_sha256, terminal_id, expires_s) "
                f"VALUES ('{terminal_id:064d}', {terminal_id}, 0)"
            )
        run("UPDATE cards SET replaced_by = 2 WHERE serial = 1")
        run(
            "INSERT INTO transactions (id, kind, created_s, label, terminal_id, seq) "
            "VALUES (10, 'payment', 0, 'Laden', 8, 1)"
        )
        run("INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (10, 100, -5)")
        run("INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (10, 102, 5)")
        for txn_id, label in ((1, "Aufladung (cash)"), (2, "Aufladung (bank)"), (3, "online")):
            run(
                "INSERT INTO transactions (id, kind, created_s, label) "
                f"VALUES ({txn_id}, 'topup', 0, '{label}')"
            )
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    with engine.begin() as conn:
        legacy = dict(conn.exec_driver_sql("SELECT number, legacy_check_code FROM cards").all())
        assert {k: bool(v) for k, v in legacy.items()} == {
            "9276000000000018": True,  # issued: its printed code still works
            "9276000000000026": False,  # only reserved: it will get the new code
        }
        labels = [r[0] for r in conn.exec_driver_sql("SELECT label FROM transactions ORDER BY id")]
        assert labels == ["Aufladung (bar)", "Aufladung (Überweisung)", "online", "Laden"]
        codes = conn.exec_driver_sql("SELECT terminal_id FROM enrolment_codes ORDER BY 1").all()
        assert [row[0] for row in codes] == [7, 8]
        # a pending till can now be revoked (the old CHECK refused it: a 500 at the API)
        conn.exec_driver_sql("UPDATE terminals SET status = 'revoked' WHERE id = 7")
        # an active till without a key is still impossible
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.exec_driver_sql("UPDATE terminals SET status = 'active' WHERE id = 7")
    engine.dispose()
