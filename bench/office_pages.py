"""The office's pages on a town's year, on SQLite: server time of the pages people open most.

    python bench/office_pages.py [--cards 20000] [--merchants 300] [--tills 400]
                                 [--payments 3600000]

Makes a fresh server database (`hcard-server init`) and writes a year of traffic straight
into it (`bench/year.py`, shared with `town_year.py`: sqlite3's executemany, one day at a
time). No journal rows: no page measured here reads them. Then `daily_totals` is filled the
way the server does it, by `services.dashboard.fill_daily_totals` (the nightly job), and timed.

Then the real server starts (`python -m hcard.server.cli serve`) and real HTTP requests on
loopback, logged in through the login form (a merchant through the same form, the JSON API
with its bearer token), measure the round trip of:

- `dashboard`: `/office/` (today's figures live, the rest from `daily_totals`);
- `card_page`: `/office/cards/<number>` (balance and the last 100 movements), random cards;
- `merchant_payments_json`: `GET /v1/merchants/<id>/payments`, random merchants;
- `portal_payments`: `/portal/payments` as a merchant, if the server has it (else null);
- `acceptance_page`: `/akzeptanzstellen`, if the server has it (else null);
- `floor`: `GET /v1/health` in the same run: the round trip of a request that does nothing.

Prints one JSON object on the last line: p50/p99 in ms per page and of the floor, the rows
written, the fill and `daily_totals` times. Target (issue 11): every p99 under 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures.web import PageClient
from year import TownSize, populate

from hcard import cardnumber
from hcard.server.context import Context
from hcard.server.services import dashboard, users
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

ADMIN_PASSWORD = "bench-admin-password-1"
MERCHANT_USER, MERCHANT_PASSWORD = "benchshop", "bench-merchant-password-1"
#: how many requests per page (after a few to warm up)
SAMPLES = 200
WARM_UP = 5


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = data / "port"
    log = (data / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hcard.server.cli", "serve", "--data-dir", str(data), "--port",
         "0", "--ready-file", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((data / "server.log").read_text())
        if ready.exists() and ready.read_text().strip():
            url = f"http://127.0.0.1:{ready.read_text().strip()}"
            try:
                requests.get(f"{url}/v1/health", timeout=5).raise_for_status()
                return process, url
            except requests.RequestException:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def measure(get: Callable[[int], requests.Response], samples: int = SAMPLES) -> dict[str, float]:
    """p50/p99 of the round trip in ms (`get(i)` makes the i-th request; each must be 200)."""
    for i in range(WARM_UP):
        get(i)
    times = []
    for i in range(samples):
        started = time.perf_counter()
        answer = get(i)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.url}: {answer.status_code} {answer.text[:300]}")
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
    }


def optional(browser: PageClient, path: str) -> dict[str, float] | None:
    """The page's figures if the running server has it (another part of issue 11 may not be
    done yet: null); a page that answers but fails is reported with its status."""
    status = browser.get(path, allow_redirects=False).status_code
    if status == 404:
        return None
    if status != 200:
        return {"status": status}
    return measure(lambda _i: browser.get(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=300)
    parser.add_argument("--tills", type=int, default=400)
    parser.add_argument("--payments", type=int, default=3_600_000)
    args = parser.parse_args()
    size = TownSize(args.cards, args.merchants, args.tills, args.payments)
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "hcard.server.cli", "init", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        )
        started = time.perf_counter()
        settings = Settings.build(data)
        rows = populate(settings.database_url, settings.issuer_key_path, size)
        fill_s = time.perf_counter() - started
        ctx = Context.open(Settings.build(data))
        started = time.perf_counter()
        days = dashboard.fill_daily_totals(ctx)
        daily_totals_s = time.perf_counter() - started
        users.create_user(ctx, None, MERCHANT_USER, MERCHANT_PASSWORD, Role.MERCHANT, 1)
        ctx.engine.dispose()

        process, url = start_server(data)
        try:
            result = run_requests(url, args)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        json.dumps(
            {
                **result,
                "rows": rows,
                "fill_s": round(fill_s, 1),
                "daily_totals_days": days,
                "daily_totals_s": round(daily_totals_s, 1),
                "cores": os.cpu_count(),
            }
        )
    )


def run_requests(url: str, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(5)
    office = PageClient(url, language="de")
    office.login("admin", ADMIN_PASSWORD)
    api = requests.Session()
    token = api.post(
        f"{url}/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    ).json()["token"]
    api.headers["Authorization"] = f"Bearer {token}"
    health = requests.Session()
    numbers = [cardnumber.from_serial(rng.randrange(1, args.cards + 1)) for _ in range(SAMPLES)]
    merchants = [rng.randrange(1, args.merchants + 1) for _ in range(SAMPLES)]
    result: dict[str, object] = {
        "floor": measure(lambda _i: health.get(f"{url}/v1/health", timeout=30)),
        "dashboard": measure(lambda _i: office.get("/office/"), SAMPLES // 2),
        "card_page": measure(lambda i: office.get(f"/office/cards/{numbers[i % SAMPLES]}")),
        "merchant_payments_json": measure(
            lambda i: api.get(f"{url}/v1/merchants/{merchants[i % SAMPLES]}/payments", timeout=30)
        ),
    }
    dashboard_page = office.get("/office/").text
    figure = re.search(r'id="h-bafin".*?<p class="figure">([^<]*)</p>', dashboard_page, re.S)
    result["dashboard_12_months"] = figure.group(1) if figure else None
    shop = PageClient(url, language="de")
    shop.login(MERCHANT_USER, MERCHANT_PASSWORD)
    result["portal_payments"] = optional(shop, "/portal/payments")
    result["acceptance_page"] = optional(PageClient(url, language="de"), "/akzeptanzstellen")
    return result


if __name__ == "__main__":
    main()
