"""Rolling the Hattingen Card out: the office's tool and the installer's.

- `cli` — `hcard-provision`: staff login, merchants, terminals, card batches, one card.
- `staff` — the staff API client and the cached login (mode 0600).
- `issuance` — batch issuance: reserve, write, verify, protect, resume, print file.
- `demo` — `make demo`: the whole system on one machine through its real paths.
- `install/` — `install-server.sh`, `install-terminal.sh` (Raspberry Pi OS), Caddy site.

Nothing is imported here, so importing one module never pulls in what another needs (nfcpy,
rich). The server database backup is the server's own command (`hcard-server backup`).
"""
