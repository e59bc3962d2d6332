"""The Kivy application: screens, navigation, and the hand-off to the `Till`.

Every `Till` call goes through `TillWorker` (never on the UI thread); the
answers come back here and are only *shown*. The screens themselves are in
`till.kv`; this class holds what they display and what their buttons do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock, ClockEvent
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    DictProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)

from hcard.errors import Code, message
from hcard.money import format_cents
from hcard.terminal.app import keypad, pin, printer, settings
from hcard.terminal.app.i18n import Translator
from hcard.terminal.app.sound import Sounds
from hcard.terminal.app.widgets import ResultSymbol, TapPrompt
from hcard.terminal.app.worker import TillWorker, error_code
from hcard.terminal.till import (
    CardInfo,
    DayTotals,
    Outcome,
    PaymentResult,
    Status,
    Till,
    TodayEntry,
    declined,
)

log = logging.getLogger(__name__)
# Not "till.kv": Kivy would load that a second time on its own (TillApp → till.kv).
KV_FILE = Path(__file__).with_name("layout.kv")
PIN_MAX_TRIES = 3
PIN_LOCK_S = 30.0
RESULT_IDLE_S = 20.0  # an approved result goes back to amount entry by itself

Factory.register("ResultSymbol", cls=ResultSymbol)
Factory.register("TapPrompt", cls=TapPrompt)


def _cents(value: object) -> int:
    """An amount kept in a list row (an int), 0 when there is none."""
    return value if isinstance(value, int) else 0


def mask_card(card_number: str) -> str:
    """Show only the last four digits of a card number on screen."""
    digits = card_number.replace(" ", "")
    return f"•••• {digits[-4:]}" if len(digits) > 4 else digits


class TillApp(App):
    """One instance per till. `till` is None only for `screenshots`, which never pays."""

    # layout: `u` scales every size (1.0 at 480 px on the short side)
    u = NumericProperty(1.0)
    landscape = BooleanProperty(True)
    tr = ObjectProperty(None, rebind=True)
    # amount entry
    amount_cents = NumericProperty(0)
    amount_text = StringProperty("")
    notice = StringProperty("")
    gastronomy = BooleanProperty(False)
    # tip step
    tip_cents = NumericProperty(0)
    tip_percent = NumericProperty(-1)  # -1: free amount typed
    tip_text = StringProperty("")
    total_text = StringProperty("")
    base_text = StringProperty("")
    # top-up (cash onto a card): its own amount, so a sale being typed is kept
    topup_cents = NumericProperty(0)
    topup_text = StringProperty("")
    topup_notice = StringProperty("")
    # tap prompt and results
    tap_title = StringProperty("")
    tap_amount_text = StringProperty("")
    result = DictProperty({})
    partial_offer_cents = NumericProperty(0)
    still_to_pay_cents = NumericProperty(0)
    # balance, today, day close
    balance = DictProperty({})
    today_rows = ListProperty([])
    day_totals = DictProperty({})
    # PIN
    pin_dots = StringProperty("")
    pin_message = StringProperty("")
    # status bar and settings
    status = DictProperty({})
    settings_view = DictProperty({})

    def __init__(
        self,
        till: Till | None,
        data_dir: Path,
        app_settings: settings.AppSettings,
        status_interval_s: float = 2.0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.title = "Hattingen Card"
        self.till = till
        self.data_dir = Path(data_dir)
        self.settings = app_settings
        self.tr = Translator(app_settings.language)
        self.gastronomy = app_settings.mode == settings.TillMode.GASTRONOMY
        self.worker = TillWorker(till, status_interval_s) if till is not None else None
        self.sounds: Sounds | None = None
        self.ready_at_s: float | None = None
        self._pin_entry = ""
        self._pin_then: Callable[[], None] | None = None
        self._pin_failures = 0
        self._pin_locked_until_s = 0.0
        self._entering_tip = False
        self._idle_event: ClockEvent | None = None
        self._last_status: Status | None = None
        self._after_result = "amount"  # where "Done" on the result screen leads
        self._render_amount()
        self._render_topup()

    # ----------------------------------------------------------------- lifecycle
    def build(self):
        Window.bind(size=self._on_window_size)
        self._on_window_size(Window, Window.size)
        return Builder.load_file(str(KV_FILE))

    def on_start(self) -> None:
        self.sounds = Sounds(self.data_dir / "sounds")
        self._refresh_settings_view()
        if self.worker is not None:
            self.worker.start_status(self._on_status)
        Clock.schedule_once(self._mark_ready)

    def _mark_ready(self, _dt: float) -> None:
        self.ready_at_s = time.monotonic()
        log.info("till ready")

    def on_stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def _on_window_size(self, _window: object, size: tuple[int, int]) -> None:
        width, height = size
        self.u = min(width, height) / 480
        self.landscape = width >= height

    @property
    def lang(self) -> str:
        return self.tr.language

    def money(self, cents: int) -> str:
        return format_cents(int(cents), self.lang)

    def go(self, screen: str) -> None:
        self.root.ids.screens.current = screen

    @property
    def current_screen(self) -> str:
        return self.root.ids.screens.current

    @property
    def _worker(self) -> TillWorker:
        """The worker, for a till call: the app runs none without a till (`_can_start`)."""
        if self.worker is None:
            raise RuntimeError("this app has no till")
        return self.worker

    def _can_start(self) -> bool:
        """True when a till call may start now; otherwise say why on the amount screen."""
        if self.worker is None:
            return False
        if self.worker.busy:
            self.notice = self.tr._("One moment, please…")
            return False
        return True

    # -------------------------------------------------------------- amount entry
    def key(self, target: str, key: str) -> None:
        """A keypad press: `target` is amount, tip or pin; `key` a digit, C or back."""
        if target == "pin":
            self._pin_key(key)
            return
        if target == "tip":
            # After a percent button the first key starts a fresh tip amount.
            value = self.tip_cents if self.tip_percent == -1 else 0
        elif target == "topup":
            value = self.topup_cents
        else:
            value = self.amount_cents
        if key == "C":
            value = 0
        elif key == "back":
            value = keypad.backspace(value)
        else:
            value = keypad.push_digit(value, int(key))
        if target == "tip":
            self.tip_percent = -1
            self.tip_cents = value
            self._render_tip()
        elif target == "topup":
            self.topup_cents = value
            self.topup_notice = ""
            self._render_topup()
        else:
            self.amount_cents = value
            self.notice = ""
            self._render_amount()

    def _render_amount(self) -> None:
        self.amount_text = self.money(self.amount_cents)

    def pay_pressed(self) -> None:
        if self.amount_cents <= 0:
            self.notice = self.tr._("Please type an amount first.")
            return
        if self.status and not self.status.get("enrolled", True):
            self.notice = self.tr._("This till is not enrolled yet.")
            return
        self.still_to_pay_cents = 0
        if self.gastronomy:
            self.tip_cents = 0
            self.tip_percent = 0
            self._render_tip()
            self.go("tip")
        else:
            self.tip_cents = 0
            self.start_payment(self.amount_cents, 0)

    # ------------------------------------------------------------------ tip step
    def set_tip_percent(self, percent: int) -> None:
        self.tip_percent = percent
        self.tip_cents = keypad.tip_for_percent(self.amount_cents, percent)
        self._render_tip()

    def _render_tip(self) -> None:
        self.base_text = self.money(self.amount_cents)
        self.tip_text = self.money(self.tip_cents)
        self.total_text = self.money(self.amount_cents + self.tip_cents)

    def tip_done(self) -> None:
        self.start_payment(self.amount_cents, self.tip_cents)

    # ----------------------------------------------------------------- payment
    def start_payment(self, amount_cents: int, tip_cents: int) -> None:
        """Show "Karte auflegen" and let the till wait for the card on its thread.

        `amount_cents` excludes the tip here; the `Till` takes the total with
        the tip inside it (as the journal record does).
        """
        if not self._can_start():
            return
        self.tap_title = self.tr._("Please tap the card")
        self.tap_amount_text = self.money(amount_cents + tip_cents)
        self.go("tap")
        timeout_s = self.settings.card_timeout_s
        self._worker.submit(
            lambda: self._worker.till.pay(
                amount_cents + tip_cents, tip_cents, card_timeout_s=timeout_s
            ),
            self._on_payment,
            self._on_failure,
        )

    def cancel_tap(self) -> None:
        """Cancel button on the tap prompt: the waiting call returns CANCELLED."""
        if self.worker is not None:
            self.worker.till.cancel()

    def _on_payment(self, result: PaymentResult) -> None:
        if result.outcome == Outcome.CANCELLED:
            self.notice = self.tr._("Cancelled: no card.")
            self.go("amount")
            return
        self.show_payment_result(result)
        self._refresh_status_now()

    def show_payment_result(self, result: PaymentResult) -> None:
        """Fill the result screen from a `PaymentResult` and play its sound."""
        approved = result.outcome == Outcome.APPROVED
        still_to_pay_cents = 0
        offer_cents = 0
        asked_cents = self.amount_cents + self.tip_cents
        if approved:
            still_to_pay_cents = max(0, self.still_to_pay_cents or 0)
            title = (
                self.tr._("Partial payment approved") if still_to_pay_cents else self.tr._("Paid")
            )
            reason = ""
        else:
            title = self.tr._("Declined")
            reason = message(result.code or Code.INTERNAL_ERROR, self.lang)
            if result.code == Code.INSUFFICIENT_FUNDS and (result.available_cents or 0) > 0:
                offer_cents = min(result.available_cents, asked_cents)
        lines = []
        if result.balance_cents is not None:
            lines.append(
                self.tr._("Remaining balance: {amount}").format(
                    amount=self.money(result.balance_cents)
                )
            )
        if result.receipt_no is not None and approved:
            lines.append(self.tr._("Receipt no. {number}").format(number=result.receipt_no))
        if result.offline and approved:
            lines.append(self.tr._("Offline: will be sent later"))
        self.partial_offer_cents = offer_cents
        self._after_result = "amount"
        self.result = {
            "kind": Outcome.APPROVED if approved else Outcome.DECLINED,
            "title": title,
            "amount": self.money(result.amount_cents) if approved else self.money(asked_cents),
            "details": "\n".join(lines),
            "reason": reason,
            "offer": (
                self.tr._("Take {available} now, {rest} by other means").format(
                    available=self.money(offer_cents), rest=self.money(asked_cents - offer_cents)
                )
                if offer_cents
                else ""
            ),
            "still_to_pay": (
                self.tr._("Still to pay by other means: {amount}").format(
                    amount=self.money(still_to_pay_cents)
                )
                if still_to_pay_cents
                else ""
            ),
        }
        self.go("result")
        if self.sounds is not None:
            self.sounds.play(Outcome.APPROVED if approved else Outcome.DECLINED)
        if approved:
            self._clear_sale()
            self._schedule_idle()

    def take_partial(self) -> None:
        """Charge what the card has; the rest is shown as still to pay.

        A partial payment carries no tip: the card pays part of the bill, and
        the tip is part of what the guest pays by other means.
        """
        offer_cents = self.partial_offer_cents
        if offer_cents <= 0:
            return
        self.still_to_pay_cents = self.amount_cents + self.tip_cents - offer_cents
        self.start_payment(offer_cents, 0)

    def result_done(self) -> None:
        if self.result.get("kind") != Outcome.APPROVED:
            self.still_to_pay_cents = 0
        self._cancel_idle()
        self.go(self._after_result)

    def _clear_sale(self) -> None:
        self.amount_cents = 0
        self.tip_cents = 0
        self.still_to_pay_cents = 0
        self.notice = ""
        self._render_amount()

    def _schedule_idle(self) -> None:
        self._cancel_idle()
        self._idle_event = Clock.schedule_once(
            lambda _dt: self.result_done() if self.current_screen == "result" else None,
            RESULT_IDLE_S,
        )

    def _cancel_idle(self) -> None:
        if self._idle_event is not None:
            self._idle_event.cancel()
            self._idle_event = None

    def _on_failure(self, error: BaseException) -> None:
        """An exception from the core: shown as a decline with its code, never swallowed."""
        log.error("till call failed: %r", error)
        code = error_code(error)
        self.show_payment_result(declined(code, offline=False))

    # ------------------------------------------------------------------- top-up
    def open_topup(self) -> None:
        """The top-up screen: cash taken at the till onto a card (no manager PIN, docs/app.md)."""
        self.topup_cents = 0
        self.topup_notice = ""
        self._render_topup()
        self.go("topup")

    def _render_topup(self) -> None:
        self.topup_text = self.money(self.topup_cents)

    def topup_pressed(self) -> None:
        """Aufladen: wait for the card on the till's thread; online only (the core decides)."""
        if self.topup_cents <= 0:
            self.topup_notice = self.tr._("Please type an amount first.")
            return
        if self.status and not self.status.get("enrolled", True):
            self.topup_notice = self.tr._("This till is not enrolled yet.")
            return
        if not self._can_start():
            self.topup_notice = self.notice
            return
        amount_cents = self.topup_cents
        self.tap_title = self.tr._("Top-up: please tap the card")
        self.tap_amount_text = self.money(amount_cents)
        self.go("tap")
        timeout_s = self.settings.card_timeout_s
        self._worker.submit(
            lambda: self._worker.till.topup(amount_cents, card_timeout_s=timeout_s),
            self._on_topup,
            lambda error: self._on_topup(declined(error_code(error), offline=False)),
        )

    def _on_topup(self, result: PaymentResult) -> None:
        if result.outcome == Outcome.CANCELLED:
            self.topup_notice = self.tr._("Cancelled: no card.")
            self.go("topup")
            return
        self.show_topup_result(result)
        self._refresh_status_now()

    def topup_reason(self, code: Code | None) -> str:
        """Why a top-up was refused, in the cashier's words."""
        if code == Code.SERVER_UNREACHABLE:
            return self.tr._("Top-ups need a connection to the server.")
        return message(code or Code.INTERNAL_ERROR, self.lang)

    def show_topup_result(self, result: PaymentResult) -> None:
        """Approved with the card's new balance and the receipt number, or declined and why."""
        approved = result.outcome == Outcome.APPROVED
        lines = []
        if approved and result.balance_cents is not None:
            lines.append(
                self.tr._("New balance: {amount}").format(amount=self.money(result.balance_cents))
            )
        if approved and result.receipt_no is not None:
            lines.append(self.tr._("Receipt no. {number}").format(number=result.receipt_no))
        self.partial_offer_cents = 0  # a top-up is never taken in part
        # declined: back to the top-up with its amount, to try again
        self._after_result = "amount" if approved else "topup"
        self.result = {
            "kind": Outcome.APPROVED if approved else Outcome.DECLINED,
            "title": self.tr._("Topped up") if approved else self.tr._("Not topped up"),
            "amount": self.money(result.amount_cents if approved else self.topup_cents),
            "details": "\n".join(lines),
            "reason": "" if approved else self.topup_reason(result.code),
            "offer": "",
            "still_to_pay": "",
        }
        self.go("result")
        if self.sounds is not None:
            self.sounds.play(Outcome.APPROVED if approved else Outcome.DECLINED)
        if approved:
            self.topup_cents = 0
            self._render_topup()
            self._schedule_idle()

    # ------------------------------------------------------------- balance check
    def start_balance(self) -> None:
        if not self._can_start():
            return
        self.balance = {"state": "waiting"}
        self.go("balance")
        timeout_s = self.settings.card_timeout_s
        self._worker.submit(
            lambda: self._worker.till.balance(card_timeout_s=timeout_s),
            self._on_balance,
            lambda error: self._on_balance_error(error_code(error)),
        )

    def _on_balance(self, info: CardInfo) -> None:
        if not info.card_number:
            if info.code is None:  # no card within the timeout, or cancelled
                self.go("amount")
            else:  # refused before its number could be trusted
                self._on_balance_error(info.code)
            return
        recent = "\n".join(f"{self.money(cents)}   {label}" for cents, label in info.recent[:5])
        self.balance = {
            "state": "shown",
            "card": mask_card(info.card_number),
            "amount": self.tr._("unknown")
            if info.balance_cents is None
            else self.money(info.balance_cents),
            "blocked": message(info.code, self.lang) if info.code is not None else "",
            "recent": recent or self.tr._("No payments yet."),
        }

    def _on_balance_error(self, code: Code) -> None:
        self.balance = {"state": "error", "reason": message(code, self.lang)}
        if self.sounds is not None:
            self.sounds.play(Outcome.DECLINED)

    # --------------------------------------------------------------- manager PIN
    def ask_pin(self, then: Callable[[], None]) -> None:
        """Run `then` once the manager PIN was typed correctly."""
        self._pin_then = then
        self._pin_entry = ""
        self.pin_dots = ""
        if not self.settings.manager_pin_hash:
            self.pin_message = self.tr._("No manager PIN yet: run set-pin on the till.")
        else:
            self.pin_message = self.tr._("Manager PIN")
        self.go("pin")

    def _pin_key(self, key: str) -> None:
        if key == "C":
            self._pin_entry = ""
        elif key == "back":
            self._pin_entry = self._pin_entry[:-1]
        elif len(self._pin_entry) < pin.PIN_MAX_DIGITS:
            self._pin_entry += key
        self.pin_dots = "●" * len(self._pin_entry)

    def pin_ok(self) -> None:
        now_s = time.monotonic()
        if now_s < self._pin_locked_until_s:
            self.pin_message = self.tr._("Too many wrong PINs. Wait {seconds} s.").format(
                seconds=int(self._pin_locked_until_s - now_s) + 1
            )
            return
        entry, self._pin_entry, self.pin_dots = self._pin_entry, "", ""
        if pin.check_pin(entry, self.settings.manager_pin_hash):
            self._pin_failures = 0
            then, self._pin_then = self._pin_then, None
            if then is not None:
                then()
            return
        self._pin_failures += 1
        if self._pin_failures >= PIN_MAX_TRIES:
            self._pin_failures = 0
            self._pin_locked_until_s = now_s + PIN_LOCK_S
        self.pin_message = self.tr._("Wrong PIN.")

    # --------------------------------------------------------------- today, void
    def open_today(self) -> None:
        if not self._can_start():
            return
        self.today_rows = []
        self.go("today")
        self._worker.submit(self._worker.till.today, self._on_today, self._on_failure)

    def _on_today(self, entries: list[TodayEntry]) -> None:
        self.today_rows = [self._today_row(e) for e in reversed(entries)]

    def _today_row(self, entry: TodayEntry) -> dict[str, object]:
        flags = []
        if entry.topup:
            flags.append(self.tr._("top-up"))
        if entry.tip_cents:
            flags.append(self.tr._("tip {amount}").format(amount=self.money(entry.tip_cents)))
        if entry.offline:
            flags.append(self.tr._("offline"))
        if entry.voided:
            flags.append(self.tr._("voided"))
        return {
            "receipt_no": entry.receipt_no,
            "text": self.tr._("No. {number}").format(number=entry.receipt_no)
            + "   "
            + mask_card(entry.card_number),
            "amount": self.money(entry.amount_cents),
            "flags": ", ".join(flags),
            "voidable": not entry.voided,
            # a top-up is voided with its card on the reader (the cash goes back)
            "topup": entry.topup,
            "amount_cents": entry.amount_cents,
        }

    def void_pressed(self, receipt_no: int) -> None:
        row: dict[str, object] = next(
            (r for r in self.today_rows if r["receipt_no"] == receipt_no), {}
        )
        self.ask_pin(lambda: self._void(receipt_no, bool(row.get("topup")), row))

    def _void(
        self, receipt_no: int, topup: bool = False, row: dict[str, object] | None = None
    ) -> None:
        if not self._can_start():
            self.go("amount")
            return
        if topup:
            self.tap_title = self.tr._("Void top-up {number}: please tap the card").format(
                number=receipt_no
            )
            self.tap_amount_text = self.money(_cents((row or {}).get("amount_cents")))
        else:
            self.tap_title = self.tr._("Voiding receipt {number}").format(number=receipt_no)
            self.tap_amount_text = ""
        self.go("tap")
        timeout_s = self.settings.card_timeout_s
        asked_cents = _cents((row or {}).get("amount_cents"))
        self._worker.submit(
            lambda: self._worker.till.void(receipt_no, card_timeout_s=timeout_s),
            lambda result: self._on_void(result, topup, asked_cents),
            self._on_failure,
        )

    def void_reason(self, code: Code | None, topup: bool, available_cents: int | None) -> str:
        """Why a void was refused, in the cashier's words (a top-up's void needs its card
        and the money still on it)."""
        if topup and code == Code.PAYMENT_NOT_FOUND:
            return self.tr._("This is not the card of this top-up.")
        if topup and code == Code.INSUFFICIENT_FUNDS:
            return self.tr._("Already spent: only {amount} left on the card.").format(
                amount=self.money(max(0, available_cents or 0))
            )
        return message(code or Code.INTERNAL_ERROR, self.lang)

    def _on_void(self, result: PaymentResult, topup: bool = False, asked_cents: int = 0) -> None:
        if result.outcome == Outcome.CANCELLED:  # a top-up's card did not come
            self.notice = self.tr._("Cancelled: no card.")
            self.go("amount")
            return
        approved = result.outcome == Outcome.APPROVED
        self.partial_offer_cents = 0
        self._after_result = "amount"
        lines = []
        if result.receipt_no is not None:
            lines.append(self.tr._("Receipt no. {number}").format(number=result.receipt_no))
        if approved and topup and result.balance_cents is not None:
            lines.append(
                self.tr._("New balance: {amount}").format(amount=self.money(result.balance_cents))
            )
        self.result = {
            "kind": Outcome.APPROVED if approved else Outcome.DECLINED,
            "title": self.tr._("Voided") if approved else self.tr._("Not voided"),
            "amount": self.money(result.amount_cents if approved else asked_cents),
            "details": "\n".join(lines),
            "reason": ""
            if approved
            else self.void_reason(result.code, topup, result.available_cents),
            "offer": "",
            # the cash of a voided top-up goes back to the customer
            "still_to_pay": self.tr._("Give the cash back: {amount}").format(
                amount=self.money(result.amount_cents)
            )
            if approved and topup
            else "",
        }
        self.go("result")
        if self.sounds is not None:
            self.sounds.play(Outcome.APPROVED if approved else Outcome.DECLINED)
        self._refresh_status_now()

    # ----------------------------------------------------------------- day close
    def open_day_close(self) -> None:
        self.day_totals = {}
        self.go("dayclose")

    def run_day_close(self) -> None:
        if not self._can_start():
            return
        self.day_totals = {"state": "running"}
        self._worker.submit(self._worker.till.day_close, self._on_day_close, self._on_failure)

    def _on_day_close(self, totals: DayTotals) -> None:
        self.day_totals = {
            "state": "done",
            "receipts": (
                "–"
                if totals.first_receipt_no is None
                else f"{totals.first_receipt_no} – {totals.last_receipt_no}"
            ),
            "count": str(totals.count),
            "sum": self.money(totals.sum_cents),
            "voids": f"{totals.void_count}  ({self.money(totals.void_sum_cents)})",
            "offline": str(totals.offline_count),
            "unsynced": str(totals.unsynced_count),
            "topups": f"{totals.topup_count}  ({self.money(totals.topup_sum_cents)})",
            "topup_voids": f"{totals.topup_void_count}"
            f"  ({self.money(totals.topup_void_sum_cents)})",
            "operator_cash": self.money(totals.operator_cash_cents),
            "printed": self.tr._("Printing…")
            if self.settings.printer
            else self.tr._("No printer set up: receipt not printed."),
        }
        self._refresh_status_now()
        self._print_day_close(totals)

    def _print_day_close(self, totals: DayTotals) -> None:
        spec = printer.parse_printer_spec(self.settings.printer)
        if spec is None or self.worker is None:
            return
        header = self.status.get("merchant") or "Hattingen Card"
        lines = printer.day_close_lines(totals, header, self.tr._, self.lang)

        def done(_none: None) -> None:
            self.day_totals = {**self.day_totals, "printed": self.tr._("Receipt printed.")}

        def failed(error: BaseException) -> None:
            log.warning("printer: %s", error)
            self.day_totals = {
                **self.day_totals,
                "printed": self.tr._("Printer not reachable: receipt not printed."),
            }

        self.worker.background(lambda: printer.print_lines(spec, lines), done, failed)

    # ------------------------------------------------------------------ settings
    def open_settings(self) -> None:
        self.ask_pin(self._show_settings)

    def _show_settings(self) -> None:
        self._refresh_settings_view()
        self.go("settings")

    def change_setting(self, **changes: object) -> None:
        """Apply and save one change; a bad value is shown, never saved."""
        try:
            new = self.settings.with_changes(**changes)
        except ValueError as exc:
            self.settings_view = {**self.settings_view, "error": str(exc)}
            return
        settings.save(self.data_dir, new)
        self.settings = new
        self.gastronomy = new.mode == settings.TillMode.GASTRONOMY
        self.tr.switch(new.language)
        self._render_amount()
        self._render_topup()
        if self._last_status is not None:
            self.show_status(self._last_status)  # its texts are rendered here, not in kv
        self._refresh_settings_view()

    def _refresh_settings_view(self) -> None:
        status = self.status
        if status.get("enrolled"):
            enrolment = self.tr._("Enrolled as terminal {terminal} of {merchant}").format(
                terminal=status.get("terminal_id"), merchant=status.get("merchant") or "?"
            )
        elif status:
            enrolment = self.tr._("Not enrolled")
        else:
            enrolment = "…"
        self.settings_view = {
            "language": self.settings.language,
            "mode": self.settings.mode,
            "printer": self.settings.printer,
            "server": status.get("server_url") or "-",
            "enrolment": enrolment,
            "error": "",
        }

    # ---------------------------------------------------------------- status bar
    def _refresh_status_now(self) -> None:
        if self.worker is not None:
            self.worker.poke_status()

    def _on_status(self, status: Status) -> None:
        self.show_status(status)

    def show_status(self, status: Status) -> None:
        """Fill the status bar, in the cashier's words (`status_texts`)."""
        self._last_status = status
        self.status = {
            "enrolled": status.enrolled,
            "online": status.online,
            "reader": status.reader_connected,
            "unsynced": status.unsynced_count,
            "terminal_id": status.terminal_id,
            "merchant": status.merchant_name or "",
            "server_url": status.server_url or "",
            **self.status_texts(status),
        }
        if self.current_screen == "settings":
            self._refresh_settings_view()

    def status_texts(self, status: Status) -> dict[str, str]:
        """The status bar's words: `online_text`, `sent_text`, `reader_text`.

        - "● Online", or "✗ OFFLINE seit 12:52": offline, with the time of the last
          successful sync, i.e. when the server was last reached (the sync agent syncs
          every few seconds while online); "✗ OFFLINE" before the first one.
        - "✓ Alles übertragen" when nothing waits, else "3 Buchungen warten auf
          Übertragung": the journal records not yet acknowledged by the server.
          "Buchungen" (transactions), not "Zahlungen": voids and day closes wait too,
          and "1 Zahlung wartet" after a day close would be wrong.
        - "✓ Kartenleser" or "✗ KEIN KARTENLESER".
        """
        _ = self.tr._
        if status.online:
            online = "● " + _("Online")
        elif status.last_sync_s:
            since = time.strftime("%H:%M", time.localtime(status.last_sync_s))
            online = "✗ " + _("OFFLINE since {time}").format(time=since)
        else:
            online = "✗ " + _("OFFLINE")
        count = status.unsynced_count
        sent = (
            self.tr.ngettext(
                "{count} transaction waiting to be sent",
                "{count} transactions waiting to be sent",
                count,
            ).format(count=count)
            if count
            else "✓ " + _("All sent")
        )
        reader = "✓ " + _("Card reader") if status.reader_connected else "✗ " + _("NO CARD READER")
        return {"online_text": online, "sent_text": sent, "reader_text": reader}

    def show_not_enrolled(self) -> None:
        """A till without enrolment: say so instead of offering to pay."""
        self.show_status(
            Status(
                enrolled=False,
                online=False,
                reader_connected=False,
                unsynced_count=0,
                last_sync_s=None,
                terminal_id=None,
                merchant_name=None,
                server_url=None,
            )
        )
        self.notice = self.tr._("This till is not enrolled yet.")

    def sync_now(self) -> None:
        """A tap on the status bar: one sync round now, beside whatever the till does."""
        if self.worker is None:
            return
        self.worker.background(
            self.worker.till.sync_now,
            lambda _none: self._refresh_status_now(),
            lambda error: log.warning("sync: %s", error),
        )
