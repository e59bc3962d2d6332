"""What every service function gets: the engine, the settings, the issuer key, a clock.

One object built once by the app factory (or the CLI), so services never reach
for globals and tests can build their own.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import keys, ntag424
from hcard.server import card_secret, check_code
from hcard.server.db import engine as db_engine
from hcard.server.db import migrate
from hcard.server.settings import Settings
from hcard.server.throttle import Throttle


@dataclass
class Context:
    engine: sa.Engine
    settings: Settings
    issuer_key: Ed25519PrivateKey
    #: the site's card write secret (hex) handed out at enrolment, if the server keeps one;
    #: repr=False: never in a log line or a traceback's locals
    card_write_secret: str | None = field(default=None, repr=False)
    #: the SUN master key (`ntag424.master_key(SUN secret, MasterKind.SUN)`) that checks the
    #: links NTAG 424 DNA cards make (`services/sun.py`), if the server keeps a SUN secret;
    #: repr=False like the secret above
    sun_master: bytes | None = field(default=None, repr=False)
    #: failed logins, enrolment codes and check codes, counted per user, card and address
    throttle: Throttle = field(init=False, repr=False)
    #: when this server started serving (whole seconds, `create_app`): a terminal request
    #: signed before it is refused (`terminals.authenticate`), because the nonces that
    #: guard against replays may be gone (a database restored from a backup); 0: no app
    started_s: int = field(init=False, default=0)
    #: the HMAC key of the printed check codes, derived from the issuer key
    check_code_key: bytes = field(init=False, repr=False)
    #: the HMAC key of the office pages' CSRF tokens, derived from the one above
    csrf_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.throttle = Throttle(self.settings.throttle)
        self.check_code_key = check_code.key_from_issuer(self.issuer_key)
        self.csrf_key = hmac.new(self.check_code_key, b"hattingen-card csrf v1", "sha256").digest()

    @property
    def issuer_public_hex(self) -> str:
        return keys.public_hex(self.issuer_key)

    @staticmethod
    def now() -> float:
        return time.time()

    @classmethod
    def open(cls, settings: Settings, *, create_key: bool = False) -> Context:
        """Open the database (migrating it to the newest schema), load the issuer key, the
        card write secret and the SUN secret if there are (CardSecretError when a file is
        unusable)."""
        engine = db_engine.make_engine(settings.database_url)
        migrate.upgrade(engine)
        path = settings.issuer_key_path
        key = keys.load_or_create_private(path) if create_key else keys.load_private(path)
        sun_secret = card_secret.load(settings, card_secret.Secret.SUN)
        return cls(
            engine=engine,
            settings=settings,
            issuer_key=key,
            card_write_secret=card_secret.load(settings),
            sun_master=None
            if sun_secret is None
            else ntag424.master_key(bytes.fromhex(sun_secret), ntag424.MasterKind.SUN),
        )
