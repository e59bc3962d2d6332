"""Blocking `Till` calls run here, off the UI thread; results come back via Kivy's clock.

Three threads, on purpose:

- **actions**: the cashier's calls (pay, balance, void, today, day close), in
  order, one at a time, like the reader itself. While one runs, `busy` is
  True and the app does not start another.
- **background**: sync-now and receipt printing. A hanging server or a printer
  out of paper must never hold up the next payment.
- **status**: polls `till.status()` every few seconds (and at once after
  `poke_status`), so the status bar keeps moving while a payment waits for a
  card.

Every callback runs on the UI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from kivy.clock import Clock

from hcard.errors import Code
from hcard.terminal.till import Status, Till

log = logging.getLogger(__name__)
T = TypeVar("T")


def _on_ui(
    future: Future[T],
    on_done: Callable[[T], None],
    on_error: Callable[[BaseException], None],
    before: Callable[[], None] | None = None,
) -> None:
    """Hand a finished future's result or error to the UI thread."""

    def deliver(_dt: float) -> None:
        if before is not None:
            before()
        error = future.exception()
        if error is not None:
            on_error(error)
        else:
            on_done(future.result())

    Clock.schedule_once(deliver)


class TillWorker:
    def __init__(self, till: Till, status_interval_s: float = 2.0) -> None:
        self.till = till
        self._actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="till-action")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="till-background")
        self._status_interval_s = status_interval_s
        self._stop = threading.Event()
        self._poke = threading.Event()
        self.busy = False

    def submit(
        self,
        call: Callable[[], T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None],
    ) -> Future[T]:
        """Run a cashier's call on the action thread; `busy` until its result is shown."""
        self.busy = True

        def idle() -> None:
            self.busy = False

        future = self._actions.submit(call)
        future.add_done_callback(lambda f: _on_ui(f, on_done, on_error, before=idle))
        return future

    def background(
        self,
        call: Callable[[], T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None],
    ) -> Future[T]:
        """Run `call` on the background thread (sync, printing); never makes the till busy."""
        future = self._background.submit(call)
        future.add_done_callback(lambda f: _on_ui(f, on_done, on_error))
        return future

    def start_status(self, on_status: Callable[[Status], None]) -> None:
        """Poll `till.status()` until `stop`; each answer goes to `on_status` on the UI thread."""

        def loop() -> None:
            while not self._stop.is_set():
                self._poke.clear()
                try:
                    status = self.till.status()
                except Exception:
                    log.exception("till status failed")
                else:
                    Clock.schedule_once(lambda _dt, s=status: on_status(s))
                self._poke.wait(self._status_interval_s)

        threading.Thread(target=loop, name="till-status", daemon=True).start()

    def poke_status(self) -> None:
        """Ask for a status poll now (after a payment or a sync), not in two seconds."""
        self._poke.set()

    def stop(self) -> None:
        """Cancel a waiting tap and let a running call finish, so the till can be closed."""
        self._stop.set()
        self._poke.set()
        try:
            self.till.cancel()
        except Exception:
            log.exception("till cancel failed")
        self._actions.shutdown(wait=True, cancel_futures=True)
        self._background.shutdown(wait=False, cancel_futures=True)


def error_code(error: BaseException) -> Code:
    """The `hcard.errors.Code` an error from the core carries, or INTERNAL_ERROR."""
    code = getattr(error, "code", None)
    return code if isinstance(code, Code) else Code.INTERNAL_ERROR
