"""`hcard-server`: init, serve, ledger check, backup.

    hcard-server init  [--data-dir D] [--database-url URL] [--admin-user admin]
                       [--card-secret-file F] [--sun-secret-file F]
    hcard-server serve [--data-dir D] [--host H] [--port P] [--ready-file F]
    hcard-server ledger check [--data-dir D]
    hcard-server backup [--data-dir D] [--dest DIR] [--keep N]
    hcard-server settle create|list|show|file|statements|cancel|import|float-check|export|…

The data dir holds the SQLite database (unless `--database-url` /
`HCARD_DATABASE_URL` points elsewhere, e.g. PostgreSQL), the issuer key
(`issuer.key`, mode 0600) and the site secrets `init` was given (`server/card_secret.py`).
The first admin's password comes from `--admin-password`, `HCARD_ADMIN_PASSWORD`, or a
prompt; never from a log. An `HCARD_*` variable with a value it cannot have
(`server/settings.py`) stops every command with one German / English line naming it, exit
status 2. Every text comes from the project's catalogues (`hcard.i18n`; `_` is `both`,
"German / English").

There is no demo command: a server with fixed demo passwords is no part of an installed
server. The throwaway demo server is `make demo` beside the tests
(`PYTHONPATH=tests python -m demo --server-only`).
"""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import os
import socket
import sqlite3
import sys
from pathlib import Path

from hcard import errors
from hcard.errors import HCardError
from hcard.i18n import bilingual_help
from hcard.i18n import both as _
from hcard.server import backup, card_secret, settle_cli
from hcard.server.context import Context
from hcard.server.services import ledger, users
from hcard.server.settings import Settings, SettingsError
from hcard.server.vocabulary import PasswordHashCost, Role

BACKUP_DIR_NAME = "backups"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.build(args.data_dir, args.database_url)


def _open(args: argparse.Namespace) -> Context:
    settings = _settings(args)
    if not settings.issuer_key_path.exists():
        raise SystemExit(
            _("No issuer key in {folder}: run `hcard-server init` first.", folder=settings.data_dir)
        )
    return Context.open(settings)


def _admin_password(args: argparse.Namespace) -> str:
    password = args.admin_password or os.environ.get("HCARD_ADMIN_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit(_("password missing") + ": --admin-password, HCARD_ADMIN_PASSWORD")
    return getpass.getpass(_("first admin's password") + ": ")


def init(
    settings: Settings,
    admin_user: str,
    admin_password: str,
    card_secret_file: Path | None = None,
    sun_secret_file: Path | None = None,
) -> Context:
    """Create database (migrated), issuer key (0600) and the first admin, if not there yet;
    install the office's card write secret and SUN secret (0600) when given."""
    if card_secret_file == sun_secret_file == card_secret.STDIN:
        raise card_secret.CardSecretError(
            _("only one secret can come from standard input") + ": --card-secret-file - "
            "--sun-secret-file -"
        )
    if card_secret_file is not None:
        card_secret.install(settings, card_secret_file)
    if sun_secret_file is not None:
        card_secret.install(settings, sun_secret_file, card_secret.Secret.SUN)
    ctx = Context.open(settings, create_key=True)
    existing = {user["username"] for user in _all_users(ctx)}
    if admin_user not in existing:
        users.create_user(ctx, None, admin_user, admin_password, Role.ADMIN)
    return ctx


def _all_users(ctx: Context) -> list[dict[str, object]]:
    system = users.Staff(user_id=0, username="system", role=Role.ADMIN, merchant_id=None)
    return users.list_users(ctx, system)


#: the garbage collector's thresholds while serving (Python's defaults: 700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 20)


def serve(ctx: Context, host: str, port: int, ready_file: Path | None = None) -> None:
    """Serve on (host, port); port 0 picks a free one, written to `ready_file` once bound."""
    import uvicorn

    from hcard.server.app import create_app

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, uvicorn's separate writes of
    # headers and body meet Nagle + delayed ACK and every answer waits ~40 ms.
    # (asyncio sets it itself only on sockets made with proto=IPPROTO_TCP.)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    bound = sock.getsockname()[1]
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        tmp.replace(ready_file)
    print(f"hcard-server: http://{host}:{bound}/ (OpenAPI: /openapi.json)", flush=True)
    config = uvicorn.Config(
        create_app(ctx), log_level="warning", access_log=False, timeout_keep_alive=30
    )
    users.dummy_hash(ctx.settings.password_hash_cost)  # the first login takes no longer
    if ctx.settings.password_hash_cost != PasswordHashCost.STANDARD:
        print(
            f"hcard-server: HCARD_PASSWORD_HASH_COST={ctx.settings.password_hash_cost}:"
            " passwords are hashed at argon2's cheapest cost, for tests only",
            file=sys.stderr,
            flush=True,
        )
    # The cyclic garbage collector ran every 700 allocations and walked the whole heap now
    # and then: a sync of a thousand records allocates hundreds of thousands of objects, so
    # it cost about a tenth of the server's CPU per record (bench/town_year.py). What the
    # start-up made is frozen out of its walks, and it runs less often; memory freed by
    # reference counting (nearly all of it) is unchanged.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.Server(config).run(sockets=[sock])


def run_backup(settings: Settings, dest: Path | None, keep: int) -> int:
    """One backup generation of the server's own database; exit 1 with the reason if not."""
    dest = dest or Path(os.environ.get("HCARD_BACKUP_DIR") or settings.data_dir / BACKUP_DIR_NAME)
    try:
        made = backup.backup(settings.database_url, dest, keep)
    except (backup.BackupError, sqlite3.Error, OSError) as exc:
        print(_("backup failed") + f": {exc}", file=sys.stderr)
        return 1
    print(made)
    return 0


def _keep(text: str) -> int:
    try:
        keep = int(text)
    except ValueError:
        keep = 0
    if keep < 1:
        raise argparse.ArgumentTypeError(_("at least 1 generation") + f": {text!r}")
    return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hcard-server",
        description=_("the Hattingen Card server: database, issuer key, HTTP API, ledger check"),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", help=_("folder for the database and the issuer key") + " (HCARD_DATA_DIR)"
        )
        p.add_argument("--database-url", help=_("SQLAlchemy URL") + " (HCARD_DATABASE_URL)")

    p_init = sub.add_parser(
        "init", help=_("create the database, the issuer key and the first admin")
    )
    common(p_init)
    p_init.add_argument("--admin-user", default="admin", help=_("the first admin's user name"))
    p_init.add_argument(
        "--admin-password", help=_("the first admin's password") + " (HCARD_ADMIN_PASSWORD)"
    )
    p_init.add_argument(
        "--card-secret-file",
        type=Path,
        help=_(
            "keep the card write secret (from `hcard-provision cards new-secret`); tills get it "
            "at enrolment; - reads standard input"
        ),
    )
    p_init.add_argument(
        "--sun-secret-file",
        type=Path,
        help=_(
            "keep the SUN secret the office issues NTAG 424 DNA cards with; the balance page "
            "checks their links with it (/k); - reads standard input"
        ),
    )
    p_serve = sub.add_parser("serve", help=_("run the HTTP server"))
    common(p_serve)
    p_serve.add_argument("--host", default="127.0.0.1", help=_("listen address"))
    p_serve.add_argument("--port", type=int, default=8000, help=_("port (0: any free one)"))
    p_serve.add_argument("--ready-file", type=Path, help=_("write the bound port here"))
    p_ledger = sub.add_parser("ledger", help=_("ledger tools"))
    p_ledger_sub = p_ledger.add_subparsers(dest="ledger_command", required=True)
    p_check = p_ledger_sub.add_parser("check", help=_("prove the ledger's invariants"))
    common(p_check)
    p_backup = sub.add_parser("backup", help=_("back the database up while it runs"))
    common(p_backup)
    p_backup.add_argument(
        "--dest",
        type=Path,
        help=_("folder for the backups (HCARD_BACKUP_DIR, else <data-dir>/backups)"),
    )
    p_backup.add_argument(
        "--keep",
        type=_keep,
        default=os.environ.get("HCARD_BACKUP_KEEP", str(backup.DEFAULT_KEEP)),
        help=_("generations kept (HCARD_BACKUP_KEEP, {keep})", keep=backup.DEFAULT_KEEP),
    )
    settle_cli.add_parser(sub, common)
    args = bilingual_help(parser).parse_args(argv)
    try:
        return _run(args)
    except (card_secret.CardSecretError, SettingsError) as exc:
        # a secret file or an HCARD_* variable that cannot be used: the message names it
        print(exc, file=sys.stderr)
        return 2
    except HCardError as exc:  # the first admin's password too weak
        print(errors.both(exc.code), file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        settings = _settings(args)
        ctx = init(
            settings,
            args.admin_user,
            _admin_password(args),
            args.card_secret_file,
            args.sun_secret_file,
        )
        print(f"ok: database {settings.database_url.split('@')[-1]}")
        print(f"ok: issuer key {settings.issuer_key_path} ({ctx.issuer_public_hex})")
        if ctx.card_write_secret is not None:
            print(f"ok: card write secret {card_secret.path(settings)} (0600)")
        if ctx.sun_master is not None:
            print(f"ok: SUN secret {card_secret.path(settings, card_secret.Secret.SUN)} (0600)")
        ctx.engine.dispose()  # the last connection closes: SQLite folds its WAL in
        return 0
    if args.command == "serve":
        serve(_open(args), args.host, args.port, args.ready_file)
        return 0
    if args.command == "settle":
        return settle_cli.run(_open(args), args)
    if args.command == "ledger":
        report = ledger.check(_open(args).engine)
        print(json.dumps(report.as_json(), indent=2))
        return 0 if report.ok else 1
    return run_backup(_settings(args), args.dest, args.keep)


if __name__ == "__main__":
    sys.exit(main())
