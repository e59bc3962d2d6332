"""Blocking `Till` calls run here, off the UI thread; results come back via Kivy's clock.

Two threads, on purpose: one for the cashier's actions (pay, balance, void, day
close, in order, one at a time, like the reader itself) and one that polls the
till's status every few seconds, so the status bar keeps moving while a payment
waits for a card. A callback always runs on the UI thread.
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


class TillWorker:
    def __init__(self, till: Till, status_interval_s: float = 2.0) -> None:
        self.till = till
        self._actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="till-action")
        self._status_interval_s = status_interval_s
        self._stop = threading.Event()
        self._status_thread: threading.Thread | None = None
        self.busy = False

    def submit(
        self,
        call: Callable[[], T],
        on_done: Callable[[T], None],
        on_error: Callable[[BaseException], None],
    ) -> Future[T]:
        """Run `call` on the action thread; hand its result or error to the UI thread."""
        self.busy = True

        def deliver(future: Future[T]) -> None:
            def on_ui(_dt: float) -> None:
                self.busy = False
                error = future.exception()
                if error is not None:
                    on_error(error)
                else:
                    on_done(future.result())

            Clock.schedule_once(on_ui)

        future = self._actions.submit(call)
        future.add_done_callback(deliver)
        return future

    def start_status(self, on_status: Callable[[Status], None]) -> None:
        """Poll `till.status()` until `stop`; each answer goes to `on_status` on the UI thread."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    status = self.till.status()
                except Exception:
                    log.exception("till status failed")
                else:
                    Clock.schedule_once(lambda _dt, s=status: on_status(s))
                self._stop.wait(self._status_interval_s)

        self._status_thread = threading.Thread(target=loop, name="till-status", daemon=True)
        self._status_thread.start()

    def refresh_status(self, on_status: Callable[[Status], None]) -> None:
        """One extra status poll now (after a payment), on the action thread."""
        self.submit(self.till.status, on_status, lambda exc: log.warning("status: %s", exc))

    def stop(self) -> None:
        self._stop.set()
        try:
            self.till.cancel()
        except Exception:
            log.exception("till cancel failed")
        self._actions.shutdown(wait=False, cancel_futures=True)


def error_code(error: BaseException) -> Code:
    """The `hcard.errors.Code` an error from the core carries, or INTERNAL_ERROR."""
    code = getattr(error, "code", None)
    return code if isinstance(code, Code) else Code.INTERNAL_ERROR
