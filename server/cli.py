"""`hcard-server`: init, serve, ledger check, backup, demo.

    hcard-server init  [--data-dir D] [--database-url URL] [--admin-user admin]
    hcard-server serve [--data-dir D] [--host H] [--port P] [--ready-file F]
    hcard-server ledger check [--data-dir D]
    hcard-server backup [--data-dir D] [--dest DIR] [--keep N]
    hcard-server demo  [--port P]

The data dir holds the SQLite database (unless `--database-url` /
`HCARD_DATABASE_URL` points elsewhere, e.g. PostgreSQL) and the issuer key
(`issuer.key`, mode 0600). The first admin's password comes from
`--admin-password`, `HCARD_ADMIN_PASSWORD`, or a prompt; never from a log.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import json
import os
import shutil
import socket
import sqlite3
import sys
from pathlib import Path

from hcard import cardnumber
from hcard.money import format_cents
from hcard.server import backup, card_secret
from hcard.server.context import Context
from hcard.server.services import cards, ledger, merchants, terminals, users
from hcard.server.settings import Settings

DEMO_ROOT = Path(".demo")
DEMO_DIR = DEMO_ROOT / "server"
DEMO_LOCK = ".demo.lock"
BACKUP_DIR_NAME = "backups"
DEMO_ADMIN = ("admin", "hattingen-demo")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.build(args.data_dir, args.database_url)


def _open(args: argparse.Namespace) -> Context:
    settings = _settings(args)
    if not settings.issuer_key_path.exists():
        raise SystemExit(
            f"Kein Ausstellerschlüssel in {settings.data_dir}: zuerst `hcard-server init`. / "
            f"No issuer key in {settings.data_dir}: run `hcard-server init` first."
        )
    return Context.open(settings)


def _admin_password(args: argparse.Namespace) -> str:
    password = args.admin_password or os.environ.get("HCARD_ADMIN_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise SystemExit(
            "Passwort fehlt / password missing: --admin-password or HCARD_ADMIN_PASSWORD"
        )
    return getpass.getpass("Passwort für den ersten Admin / first admin's password: ")


def init(
    settings: Settings,
    admin_user: str,
    admin_password: str,
    card_secret_file: Path | None = None,
) -> Context:
    """Create database (migrated), issuer key (0600) and the first admin, if not there yet;
    install the office's card write secret (0600) when given."""
    if card_secret_file is not None:
        card_secret.install(settings, card_secret_file)
    ctx = Context.open(settings, create_key=True)
    existing = {user["username"] for user in _all_users(ctx)}
    if admin_user not in existing:
        users.create_user(ctx, None, admin_user, admin_password, "admin")
    return ctx


def _all_users(ctx: Context) -> list[dict[str, object]]:
    system = users.Staff(user_id=0, username="system", role="admin", merchant_id=None)
    return users.list_users(ctx, system)


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
    uvicorn.Server(config).run(sockets=[sock])


def run_backup(settings: Settings, dest: Path | None, keep: int) -> int:
    """One backup generation of the server's own database; exit 1 with the reason if not."""
    dest = dest or Path(os.environ.get("HCARD_BACKUP_DIR") or settings.data_dir / BACKUP_DIR_NAME)
    try:
        made = backup.backup(settings.database_url, dest, keep)
    except (backup.BackupError, sqlite3.Error, OSError) as exc:
        print(f"Sicherung fehlgeschlagen / backup failed: {exc}", file=sys.stderr)
        return 1
    print(made)
    return 0


def _keep(text: str) -> int:
    try:
        keep = int(text)
    except ValueError:
        keep = 0
    if keep < 1:
        raise argparse.ArgumentTypeError(
            f"mindestens 1 Generation / at least 1 generation: {text!r}"
        )
    return keep


def hold_demo_folder(folder: Path, hint: tuple[str, str] = ("", "")) -> int:
    """Hold `folder` for this demo's lifetime, or exit with a message if another demo does.

    `make demo` (python -m hcard.provisioning.demo) empties its folder at start and
    `hcard-server demo` its `.demo/server`; while a demo runs there, that would delete its
    database, control socket and card images. So each takes an exclusive `flock` on
    `<folder>/.demo.lock` first (`.demo` for both by default). The kernel releases it when the
    process ends, however it ends, so a crashed demo never leaves a stale lock behind. The lock
    file itself is never deleted (a new file under the same name would be another lock).
    Returns the open file descriptor, which must stay open while the demo runs. `hint` is
    what else the user can do, in German and English (" oder ...", " or ...").
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / DEMO_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SystemExit(
            f"Eine andere Demo läuft schon in {folder}/ (Prozess {holder}); erst beenden (q, "
            f"Strg-C){hint[0]}. / Another demo is running in {folder}/ (process {holder}); "
            f"quit it first (q, Ctrl-C){hint[1]}."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def clear_demo_folder(folder: Path) -> None:
    """Empty a folder held with `hold_demo_folder`, keeping its lock file."""
    for entry in folder.iterdir():
        if entry.name == DEMO_LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def demo(port: int) -> None:
    """A throwaway SQLite server under .demo/server with a merchant, its merchant login, a
    terminal code and funded cards. Holds .demo like `make demo` does, so the two never
    delete each other's files."""
    hold_demo_folder(DEMO_ROOT)  # held until this process ends: the descriptor stays open
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(DEMO_DIR)
    settings = Settings.build(DEMO_DIR, f"sqlite:///{(DEMO_DIR / 'hcard.db').resolve()}")
    ctx = init(settings, *DEMO_ADMIN)
    admin = users.Staff(user_id=1, username=DEMO_ADMIN[0], role="admin", merchant_id=None)
    shop = merchants.create_merchant(
        ctx,
        admin,
        name="Eiscafé am Untermarkt",
        iban="DE89370400440532013000",
        address="Untermarkt 1, 45525 Hattingen",
        contact="info@eiscafe.example",
        fee_bp=150,
    )
    merchant_id = int(str(shop["id"]))
    enrolment = terminals.create_terminal(ctx, admin, merchant_id, "Kasse 1")
    users.create_user(ctx, admin, "eiscafe", "eiscafe-demo", "merchant", merchant_id)
    made = []
    for index, amount in enumerate((5_000, 2_000, 500), start=1):
        card = cards.issue(ctx, admin, f"04a1b2c3d4e5{index:02x}")
        cards.topup(ctx, admin, str(card["card_number"]), amount, "cash")
        made.append((str(card["card_number"]), amount))
    print("Hattingen Card demo server")
    print(f"  data:          {DEMO_DIR}/")
    print(f"  staff login:   {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}  (merchant: eiscafe / eiscafe-demo)")
    print(f"  merchant:      {shop['name']} (id {merchant_id})")
    print(f"  enrolment:     {enrolment['code']}  (terminal 'Kasse 1')")
    for number, amount in made:
        print(f"  card:          {cardnumber.pretty(number)}  {format_cents(amount)}")
    print(f"  issuer key:    {ctx.issuer_public_hex}")
    serve(ctx, "127.0.0.1", port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcard-server", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help="folder for database and issuer key (HCARD_DATA_DIR)")
        p.add_argument("--database-url", help="SQLAlchemy URL (HCARD_DATABASE_URL)")

    p_init = sub.add_parser("init", help="create database, issuer key and first admin")
    common(p_init)
    p_init.add_argument("--admin-user", default="admin")
    p_init.add_argument("--admin-password")
    p_init.add_argument(
        "--card-secret-file",
        type=Path,
        help=(
            "Kartenschreibgeheimnis (von `hcard-provision cards new-secret`) übernehmen, die "
            "Kassen bekommen es bei der Anmeldung; - liest die Standardeingabe / keep the card "
            "write secret; tills get it at enrolment; - reads standard input"
        ),
    )
    p_serve = sub.add_parser("serve", help="run the HTTP server")
    common(p_serve)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--ready-file", type=Path, help="write the bound port here")
    p_ledger = sub.add_parser("ledger", help="ledger tools")
    p_ledger_sub = p_ledger.add_subparsers(dest="ledger_command", required=True)
    p_check = p_ledger_sub.add_parser("check", help="prove the ledger's invariants")
    common(p_check)
    p_backup = sub.add_parser(
        "backup",
        help="Datenbank im laufenden Betrieb sichern / back the database up while it runs",
    )
    common(p_backup)
    p_backup.add_argument(
        "--dest",
        type=Path,
        help="Zielordner (HCARD_BACKUP_DIR, sonst <data-dir>/backups) / folder for the backups",
    )
    p_backup.add_argument(
        "--keep",
        type=_keep,
        default=os.environ.get("HCARD_BACKUP_KEEP", str(backup.DEFAULT_KEEP)),
        help=f"Generationen behalten (HCARD_BACKUP_KEEP, {backup.DEFAULT_KEEP}) / generations kept",
    )
    p_demo = sub.add_parser("demo", help="throwaway demo server with seeded data")
    p_demo.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except card_secret.CardSecretError as exc:
        print(exc, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        settings = _settings(args)
        ctx = init(settings, args.admin_user, _admin_password(args), args.card_secret_file)
        print(f"ok: database {settings.database_url.split('@')[-1]}")
        print(f"ok: issuer key {settings.issuer_key_path} ({ctx.issuer_public_hex})")
        if ctx.card_write_secret is not None:
            print(f"ok: card write secret {card_secret.path(settings)} (0600)")
        return 0
    if args.command == "serve":
        serve(_open(args), args.host, args.port, args.ready_file)
        return 0
    if args.command == "ledger":
        report = ledger.check(_open(args).engine)
        print(json.dumps(report.as_json(), indent=2))
        return 0 if report.ok else 1
    if args.command == "backup":
        return run_backup(_settings(args), args.dest, args.keep)
    demo(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
