"""The staff API as the provisioning tool uses it, and the cached login.

A marketing employee logs in once (`hcard-provision login`); the bearer token is kept in
`~/.config/hcard/provision.json` with mode 0600 (written through
`hcard.terminal.config.write_atomic`, which creates it 0600 from the first byte), so later
commands need no password and the password itself is never stored. A token the server no
longer accepts (expired, logged out) gives `not_authenticated`: log in again.

Failures come in the terminal client's two kinds, so the CLI prints one message per kind:
`HCardError` (the server refused, with its code) or `ServerUnreachableError`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from hcard.errors import Code, HCardError
from hcard.terminal.client import ServerUnreachableError, error_from_response
from hcard.terminal.config import write_atomic

TIMEOUT_S = (3.0, 30.0)


def default_login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(os.environ.get("HCARD_PROVISION_LOGIN", Path(base) / "hcard" / "provision.json"))


@dataclass(frozen=True)
class Login:
    server_url: str
    username: str
    token: str

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.__dict__, indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> Login:
        """The cached login; NOT_AUTHENTICATED when there is none (or it is unreadable)."""
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise PermissionError(f"{path} has mode {mode:o}; it must be 0600")
            data = json.loads(path.read_text("utf-8"))
            return cls(str(data["server_url"]), str(data["username"]), str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HCardError(Code.NOT_AUTHENTICATED, reason=str(exc)) from None


class StaffClient:
    """One staff user's session with the server."""

    def __init__(self, server_url: str, token: str | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self._http = requests.Session()

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._http.request(
                method, self.server_url + path, json=payload, headers=headers, timeout=TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise ServerUnreachableError(type(exc).__name__) from exc
        if not response.ok:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerUnreachableError("answer is not JSON") from exc

    # --- login ---------------------------------------------------------------------------

    def login(self, username: str, password: str) -> Login:
        answer = self.request(
            "POST", "/v1/auth/login", {"username": username, "password": password}
        )
        self.token = str(answer["token"])
        return Login(self.server_url, username, self.token)

    def logout(self) -> None:
        self.request("POST", "/v1/auth/logout")

    # --- merchants and terminals -----------------------------------------------------------

    def create_merchant(self, **fields: object) -> dict[str, Any]:
        return self.request("POST", "/v1/merchants", dict(fields))

    def merchants(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/merchants")

    def create_terminal(self, merchant_id: int, name: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/merchants/{merchant_id}/terminals", {"name": name})

    def terminals(self, merchant_id: int) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/merchants/{merchant_id}/terminals")

    def revoke_terminal(self, terminal_id: int) -> dict[str, Any]:
        return self.request("POST", f"/v1/terminals/{terminal_id}/revoke")

    # --- cards ---------------------------------------------------------------------------

    def issuer_public_key(self) -> str:
        """The server's issuer key (hex), to verify each card after writing it."""
        return str(self.request("GET", "/v1/health")["issuer_public_key"])

    def reserve_cards(self, count: int) -> list[str]:
        return self.request("POST", "/v1/cards/reserve", {"count": count})["card_numbers"]

    def issue_card(self, uid_hex: str, card_number: str) -> dict[str, Any]:
        return self.request("POST", "/v1/cards", {"uid": uid_hex, "card_number": card_number})

    def card(self, number: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/cards/{quote(number)}")

    def topup(self, number: str, amount_cents: int, source: str) -> dict[str, Any]:
        return self.request(
            "POST",
            f"/v1/cards/{quote(number)}/topup",
            {"amount_cents": amount_cents, "source": source},
        )

    def set_blocked(self, number: str, blocked: bool) -> dict[str, Any]:
        action = "block" if blocked else "unblock"
        return self.request("POST", f"/v1/cards/{quote(number)}/{action}")

    def transfer(self, number: str, to_number: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/cards/{quote(number)}/transfer", {"to_card": to_number})

    def check_code(self, number: str) -> dict[str, Any]:
        """The check code to print; ends a card's old chip-derived code (issued before)."""
        return self.request("POST", f"/v1/cards/{quote(number)}/check-code")

    def history(self, number: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/cards/{quote(number)}/history")
