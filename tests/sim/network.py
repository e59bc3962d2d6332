"""The simulated network between the tills and the server, and the door into the server.

A till's `ServerClient` keeps its `requests.Session`; `SimAdapter` is mounted on it and
hands each prepared request to `SimNetwork.carry`, which decides by the seeded random
generator what happens to it: it arrives and its answer comes back; it is dropped (the
server never sees it); its answer is lost (the server did it, the till hears nothing);
it is delayed (the till times out, the request arrives at a later step); it is duplicated
(a copy arrives at a later step); or the server crashes while doing it. Requests waiting
in the network arrive in random order (`tick`), so they are also reordered. With the
network down every request fails at once, as a pulled cable does.

No socket and no thread of the network's own: the request runs in the caller's thread on
the real app (`AsgiDoor`), one at a time, so a seed always gives the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

import anyio.to_thread
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


class ServerDownError(Exception):
    """The server crashed while it handled the request (it is restarted from its files)."""


@dataclass(frozen=True)
class Wire:
    """One request as it travels: who sent it and its exact bytes."""

    sender: str
    method: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Server(Protocol):
    def deliver(self, wire: Wire, crash: bool) -> Answer:
        """Handle `wire`; with `crash` the server dies during it (ServerDownError)."""
        ...


class Fate(StrEnum):
    """What happens to one request on its way."""

    ARRIVE = "arrive"  # it arrives and its answer comes back
    DROP = "drop"  # lost on the way: the server never sees it
    LOSE_ANSWER = "lose-answer"  # the server does it, the answer is lost
    DELAY = "delay"  # the sender times out; it arrives at a later step
    DUPLICATE = "duplicate"  # it arrives and is answered; a copy arrives at a later step
    SERVER_CRASH = "server-crash"  # the server dies while doing it


@dataclass(frozen=True)
class FaultRates:
    """The chance of each fault per request (the rest arrive and are answered)."""

    drop: float = 0.04
    lose_answer: float = 0.04
    delay: float = 0.03
    duplicate: float = 0.03
    server_crash: float = 0.01

    def weights(self) -> dict[Fate, float]:
        faults = {
            Fate.DROP: self.drop,
            Fate.LOSE_ANSWER: self.lose_answer,
            Fate.DELAY: self.delay,
            Fate.DUPLICATE: self.duplicate,
            Fate.SERVER_CRASH: self.server_crash,
        }
        return {Fate.ARRIVE: 1 - sum(faults.values()), **faults}


class SimNetwork:
    """Carries every request; holds the delayed ones until they arrive."""

    def __init__(
        self,
        rng: random.Random,
        server: Server,
        log: Callable[[str], None],
        rates: FaultRates | None = None,
    ) -> None:
        self.rng = rng
        self.server = server
        self.log = log
        weights = (rates or FaultRates()).weights()
        self._fates, self._weights = list(weights), list(weights.values())
        self.down = False
        self.healed = False  # at the end: every request arrives and is answered
        self.in_flight: list[Wire] = []

    def carry(self, wire: Wire, crash_point: Callable[[str], None]) -> Answer:
        """The answer the sender gets, or a `requests` exception like a real network's.
        The sender may crash before the request leaves and after its answer came."""
        crash_point(f"send {wire.method} {_short(wire.path)}")
        if self.down:
            raise requests.ConnectionError("network down")
        fate = Fate.ARRIVE if self.healed else self.rng.choices(self._fates, self._weights)[0]
        if fate != Fate.ARRIVE:
            self.log(f"net {fate} {wire.sender} {wire.method} {_short(wire.path)}")
        if fate == Fate.DROP:
            raise requests.ConnectionError("dropped")
        if fate in (Fate.DELAY, Fate.DUPLICATE):
            self.in_flight.append(wire)
        if fate == Fate.DELAY:
            raise requests.ReadTimeout("delayed")
        answer = self._arrive(wire, crash=fate == Fate.SERVER_CRASH)
        if fate == Fate.LOSE_ANSWER:
            raise requests.ReadTimeout("answer lost")
        crash_point(f"answer {wire.method} {_short(wire.path)}")
        return answer

    def _arrive(self, wire: Wire, crash: bool) -> Answer:
        try:
            return self.server.deliver(wire, crash)
        except ServerDownError as exc:
            raise requests.ConnectionError("server down") from exc

    def tick(self, everything: bool = False) -> None:
        """Let waiting requests arrive (each with even odds, or all), in random order;
        their answers go nowhere (the sender gave up long ago)."""
        if not self.in_flight:
            return
        self.rng.shuffle(self.in_flight)
        staying = []
        for wire in self.in_flight:
            if not everything and self.rng.random() < 0.5:
                staying.append(wire)
                continue
            try:
                answer = self._arrive(wire, crash=False)
                outcome = str(answer.status)
            except requests.ConnectionError:
                outcome = "server down"
            self.log(f"net late {wire.sender} {wire.method} {_short(wire.path)} -> {outcome}")
        self.in_flight = staying


def _short(path: str) -> str:
    return path.split("?")[0].removeprefix("/v1/terminal/")


class SimAdapter(BaseAdapter):
    """The transport of one till's `requests.Session`: every request into `SimNetwork`."""

    def __init__(self, network: SimNetwork, sender: str, crash_point: Callable[[str], None]):
        super().__init__()
        self.network = network
        self.sender = sender
        self.crash_point = crash_point

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **_kwargs: Any
    ) -> requests.Response:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):
            raise TypeError("the till's client sends its body as bytes")
        url = request.url or ""
        path = url.split("://", 1)[-1]
        path = path[path.index("/") :] if "/" in path else "/"
        wire = Wire(
            sender=self.sender,
            method=request.method or "GET",
            path=path,
            body=bytes(body),
            headers=tuple(sorted((name, str(value)) for name, value in request.headers.items())),
        )
        answer = self.network.carry(wire, self.crash_point)
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        content = answer.body
        if response.headers.get("content-encoding") == "gzip":  # as urllib3 decodes it
            content = gzip.decompress(content)
        response._content = content
        response.url = url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


_LOOP: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop for every simulated server of this process (never closed)."""
    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
    return _LOOP[0]


async def _run_inline(func: Callable[..., Any], *args: Any, **_options: Any) -> Any:
    return func(*args)


@contextlib.contextmanager
def _inline_worker_threads() -> Iterator[None]:
    """Run what the app hands to a worker thread (its sync endpoints and dependencies) in
    this thread: the requests come one at a time anyway, and a thread hand-off per call
    costs more than the call and makes the order of the server's work the scheduler's."""
    original = anyio.to_thread.run_sync
    anyio.to_thread.run_sync = _run_inline  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.to_thread.run_sync = original


class AsgiDoor:
    """Calls the ASGI app in the caller's thread, on an event loop of its own.

    Starlette's `TestClient` runs the app in another thread behind a portal, and waking
    that thread for every message costs more than the request itself; here one request is
    one `run_until_complete`. An exception the app raises after its error middleware
    answered 500 is that 500, as a real server's client sees it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def close(self) -> None:
        pass

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        with _inline_worker_threads():
            return _loop().run_until_complete(self._call(method, path, body, headers))

    async def _call(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Answer:
        path, _, query = target.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "root_path": "",
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("sim", 80),
        }
        delivered = False
        status = 500
        answer_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                answer_headers.extend(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", [])
                )
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.app(scope, receive, send)
        except Exception:
            status = 500
        return Answer(status, tuple(answer_headers), b"".join(chunks))
