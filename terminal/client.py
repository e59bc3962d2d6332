"""The terminal's HTTP client: every request signed (`hcard.reqsign`), short timeouts.

Why short timeouts: a cashier waits for the online decision with a card on the
reader. If the server does not answer within about a second the till must
decide offline instead, so `authorise` gets a connect timeout of 0.3 s and a
read timeout of 0.7 s; the sync agent, which nobody waits for, gets longer ones.

Why a clock offset: the Pi has no real-time clock, and after a power cut its
clock can be anywhere. The server refuses a timestamp more than 300 s off with
`clock_skew` and tells its own time in `details.server_time_s`; the client
keeps the difference and signs with the corrected time from then on (the
snapshot's `server_time_s` refreshes it too). Nothing else depends on the clock.

Every request also says what the till is (its software version) and how many journal
records it has not uploaded yet, in two unsigned headers the office reads (terminals not
seen for a day, records waiting); nothing depends on them.

Every failure is one of two kinds, so callers never parse exceptions:
`ServerUnreachableError` (no connection, timeout, 5xx, an answer that is not our
JSON: "decide offline, try later") or `HCardError` with the server's code
("the server said no, for this reason").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, NamedTuple

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import reqsign
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.records import Record

AUTHORISE_TIMEOUT_S = (0.3, 0.7)
SYNC_TIMEOUT_S = (2.0, 15.0)
CHECK_TIMEOUT_S = (0.5, 2.0)


def _software() -> str:
    """This till's software version, as installed (the package's version)."""
    try:
        return metadata.version("hattingen-card")
    except metadata.PackageNotFoundError:
        return "unknown"


SOFTWARE_VERSION = _software()


class SnapshotAnswer(NamedTuple):
    body: bytes
    #: (seq, hash) of the till's chain on the server, None from a server that does not say
    chain_head: tuple[int, str] | None


class AuthoriseAnswer(NamedTuple):
    answer: dict[str, Any]
    #: (seq, hash) of the till's chain on the server, None from a server that does not say
    chain_head: tuple[int, str] | None


def _chain_head(headers: Mapping[str, str]) -> tuple[int, str] | None:
    """An answer's `Hcard-Chain-Seq`/`-Hash`, None when missing or malformed."""
    seq, head_hash = headers.get(reqsign.HEADER_CHAIN_SEQ), headers.get(reqsign.HEADER_CHAIN_HASH)
    if seq is None or head_hash is None or not (seq.isascii() and seq.isdigit()) or len(seq) > 19:
        return None
    if len(head_hash) != 64 or head_hash.strip("0123456789abcdef"):
        return None
    return int(seq), head_hash


class ServerUnreachableError(Exception):
    """No usable answer from the server (network, timeout, 5xx, garbage)."""


class Clock:
    """Wall-clock time corrected by the offset learnt from the server."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s

    def now_s(self) -> float:
        return time.time() + self.offset_s

    def learn(self, server_time_s: object) -> None:
        if isinstance(server_time_s, int | float) and not isinstance(server_time_s, bool):
            self.offset_s = float(server_time_s) - time.time()


def error_from_response(response: requests.Response) -> Exception:
    """The exception for a non-2xx answer of our server, for every client of its API.

    An answer with our error body (`{"code": ..., "details": {...}}`, docs/protocol.md)
    becomes `HCardError` with that code and details ("the server said no, for this
    reason"); a 5xx or a body that is not ours becomes `ServerUnreachableError` ("no
    usable answer, try later"). The terminal's client and the staff client
    (`hcard.provisioning.staff`) share it so both read refusals the same way. The
    exception is returned, not raised, so a caller can look at it first (the clock
    retry on `clock_skew`).
    """
    if response.status_code >= 500:
        return ServerUnreachableError(f"server error {response.status_code}")
    try:
        body = response.json()
        code = Code(body["code"])
    except (ValueError, KeyError, TypeError):
        return ServerUnreachableError(f"unexpected answer {response.status_code}")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    return HCardError(code, **details)


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer, else the error of `error_from_response`."""
    if not response.ok:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError as exc:
        raise ServerUnreachableError("answer is not JSON") from exc
    if not isinstance(body, dict):
        raise ServerUnreachableError("answer is not a JSON object")
    return body


def post_json(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """An unsigned POST (only enrolment uses it); same error mapping as signed calls."""
    try:
        response = requests.post(url, json=payload, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ServerUnreachableError(type(exc).__name__) from exc
    return _json_object(response)


class ServerClient:
    """Signed requests of one terminal. Safe to share between threads.

    `records_waiting` counts the journal records not uploaded yet (the journal's own
    count, cheap); without it the till does not say.
    """

    def __init__(
        self,
        base_url: str,
        terminal_id: int,
        key: Ed25519PrivateKey,
        clock: Clock,
        records_waiting: Callable[[], int] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.terminal_id = terminal_id
        self.clock = clock
        self._key = key
        self._records_waiting = records_waiting
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The signature of one request, and what the till says of itself beside it."""
        headers = reqsign.sign_request(
            self._key, self.terminal_id, method, path, body, int(self.clock.now_s())
        )
        headers[reqsign.HEADER_SOFTWARE] = SOFTWARE_VERSION
        if self._records_waiting is not None:
            headers[reqsign.HEADER_RECORDS_WAITING] = str(self._records_waiting())
        return headers

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        timeout_s: tuple[float, float],
    ) -> dict[str, Any]:
        """Send one signed request; its answer's JSON object."""
        return _json_object(self._signed_response(method, path, payload, timeout_s))

    def _signed_response(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        timeout_s: tuple[float, float],
    ) -> requests.Response:
        """Send one signed request; its 2xx answer. Retry once after learning the server's
        clock."""
        body = b"" if payload is None else canonical_bytes(payload)
        for attempt in range(2):
            headers = self._headers(method, path, body)
            if payload is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = self._session().request(
                    method, self.base_url + path, data=body, headers=headers, timeout=timeout_s
                )
            except requests.RequestException as exc:
                raise ServerUnreachableError(type(exc).__name__) from exc
            if response.ok:
                return response
            error = error_from_response(response)
            if (
                attempt == 0
                and isinstance(error, HCardError)
                and error.code == Code.CLOCK_SKEW
                and "server_time_s" in error.details
            ):
                self.clock.learn(error.details["server_time_s"])
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ endpoints
    def authorise(self, record: Record, write_counter: int | None = None) -> AuthoriseAnswer:
        """The server's answer to an online record, and the till's chain head on the server;
        beside a top-up, the counter of the purse write the till will try."""
        payload: dict[str, Any] = {"record": record.to_wire()}
        if write_counter is not None:
            payload["counter"] = write_counter
        response = self._signed_response(
            "POST", "/v1/terminal/authorise", payload, AUTHORISE_TIMEOUT_S
        )
        return AuthoriseAnswer(_json_object(response), _chain_head(response.headers))

    def sync(
        self,
        records: list[Record],
        recorded_s: dict[int, int] | None = None,
        shown: list[int] | None = None,
    ) -> dict[str, Any]:
        """Upload `records`; `recorded_s` (seq → whole epoch seconds of the till's clock when
        it journalled the record) and `shown` (the payments and top-ups among them the till
        showed as approved) go beside them in the signed request, when given (docs/protocol.md)."""
        payload: dict[str, Any] = {"records": [r.to_wire() for r in records]}
        if recorded_s:
            payload["recorded_s"] = {str(seq): at_s for seq, at_s in sorted(recorded_s.items())}
        if shown:
            payload["shown"] = sorted(shown)
        return self.request("POST", "/v1/terminal/sync", payload, SYNC_TIMEOUT_S)

    def snapshot(self, since: int) -> dict[str, Any]:
        return self.request("GET", f"/v1/terminal/snapshot?since={since}", None, SYNC_TIMEOUT_S)

    def snapshot_body(self, since: int, keys_sha256: str | None = None) -> SnapshotAnswer:
        """The snapshot answer's bytes as they came (gzip undone): the till checks the
        issuer's signature over them (`SnapshotStore.apply_body`). With `keys_sha256`, the
        digest of the terminal keys it holds, a delta leaves them out if they are still those.
        Beside them the till's chain head on the server, if the answer says it."""
        path = f"/v1/terminal/snapshot?since={since}"
        if keys_sha256 is not None:
            path += f"&keys_sha256={keys_sha256}"
        response = self._signed_response("GET", path, None, SYNC_TIMEOUT_S)
        return SnapshotAnswer(response.content, _chain_head(response.headers))

    def card(self, card_number: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/terminal/cards/{card_number}", None, CHECK_TIMEOUT_S)
