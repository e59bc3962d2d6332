"""A test-only remote control: drive the running app through real touch events.

Off unless the environment names a Unix socket in `HCARD_APP_CONTROL` (the GUI
tests, `make demo` and `bench/app_start.py` set it; a till in a shop never does). The
client is `tests/fixtures/app_control.py` (`AppDriver`, for the tests and the demo). Each
request is one JSON line, each answer one JSON line:

- `{"op": "state"}` → current screen, readiness, the texts of every widget
  with a kv id on the current screen and the status bar, the last sound.
- `{"op": "press", "id": "keypad.k1"}` → a touch down + up at the centre of
  that widget (`status` is the status bar, `status.<id>` one of its parts),
  dispatched through Kivy's event loop exactly like a finger, so a hidden,
  disabled or covered widget cannot be "pressed" by a test.
  `"within": {"receipt_no": 17}` picks a row of a list first.
- `{"op": "type", "id": "printer", "text": "..."}` → sets a text field.
- `{"op": "screenshot", "path": "..."}` → PNG of the whole window content.
- `{"op": "geometry", "id": "amount"}` → where a widget is and where its text is
  drawn, in window pixels (`box`, `text`: [x, y, width, height], y upwards), and
  its `text`: for layout tests (texts that overlap or touch at 800x480).

Every operation runs on the UI thread (Kivy's clock); the socket thread waits
for it, so a test sees the UI exactly as a cashier would, never half-updated.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from kivy.base import EventLoop
from kivy.clock import Clock
from kivy.input.motionevent import MotionEvent
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget

log = logging.getLogger(__name__)
ENV_VAR = "HCARD_APP_CONTROL"
_touch_ids = itertools.count(1000)


class ControlError(Exception):
    pass


class _Finger(MotionEvent):
    """One synthetic touch at window coordinates (x, y)."""

    def __init__(self, x: float, y: float) -> None:
        window = EventLoop.window
        super().__init__(
            "hcard-control",
            next(_touch_ids),
            {"x": x / (window.width - 1.0), "y": y / (window.height - 1.0)},
            is_touch=True,
            type_id="touch",
        )
        self.profile = ["pos"]

    def depack(self, args: dict[str, float]) -> None:
        self.sx = args["x"]
        self.sy = args["y"]
        super().depack(args)


def _resolve(root: Widget, path: str) -> Widget:
    widget = root
    for part in path.split("."):
        ids = getattr(widget, "ids", {})
        if part not in ids:
            raise ControlError(f"no widget {path!r}")
        widget = ids[part]
    return widget


def _find(root: Widget, attributes: dict[str, Any]) -> Widget:
    for widget in root.walk(restrict=True):
        if all(getattr(widget, k, object()) == v for k, v in attributes.items()):
            return widget
    raise ControlError(f"no widget with {attributes}")


def _texts(prefix: str, root: Widget) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, widget in getattr(root, "ids", {}).items():
        text = getattr(widget, "text", None)
        if isinstance(text, str):
            found[prefix + name] = text
        found.update(_texts(f"{prefix}{name}.", widget))
    return found


class ControlServer:
    def __init__(self, app: Any, path: Path) -> None:
        self.app = app
        self.path = Path(path)
        self._sock: socket.socket | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(4)
        self._sock = sock
        threading.Thread(target=self._accept, name="hcard-control", daemon=True).start()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    request = json.loads(line)
                    answer = {"ok": True, "result": self._on_ui(request)}
                except Exception as exc:
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(answer).encode() + b"\n")
                stream.flush()

    def _on_ui(self, request: dict[str, Any]) -> Any:
        """Run the request on the UI thread and wait for its answer."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def run(_dt: float) -> None:
            try:
                box["result"] = self.handle(request)
            except Exception as exc:
                box["error"] = exc
            finally:
                done.set()

        Clock.schedule_once(run)
        if not done.wait(30):
            raise ControlError("UI thread did not answer within 30 s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    # ------------------------------------------------------------ operations
    def handle(self, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "state":
            return self.state()
        if op == "press":
            return self.press(request["id"], request.get("within"))
        if op == "type":
            widget = self._widget(request["id"], request.get("within"))
            if not isinstance(widget, TextInput):
                raise ControlError(f"{request['id']!r} is not a text field")
            widget.text = str(request["text"])
            return None
        if op == "screenshot":
            self.app.root.export_to_png(str(request["path"]))
            return str(request["path"])
        if op == "geometry":
            return self.geometry(request["id"], request.get("within"))
        raise ControlError(f"unknown op {op!r}")

    def geometry(self, path: str, within: dict[str, Any] | None) -> dict[str, Any]:
        """The widget's box and its text's box in window coordinates.

        A Label draws its texture centred on the widget (halign and valign act
        inside `text_size`), so the text's box is the texture's size around the
        centre; it may stick out of the widget, which is what a test looks for.
        """
        widget = self._widget(path, within)
        x, y = widget.to_window(widget.x, widget.y)
        width, height = widget.size
        text_w, text_h = getattr(widget, "texture_size", (0, 0))
        text = getattr(widget, "text", None)
        return {
            "box": [x, y, width, height],
            "text": [x + (width - text_w) / 2, y + (height - text_h) / 2, text_w, text_h],
            "value": text if isinstance(text, str) else None,
        }

    def state(self) -> dict[str, Any]:
        app = self.app
        if app.root is None:
            return {"ready": False}
        screen = app.root.ids.screens.current_screen
        texts = _texts("", screen)
        texts.update(_texts("status.", app.root.ids.statusbar))
        return {
            "ready": app.ready_at_s is not None,
            "screen": screen.name,
            "texts": texts,
            "sound": app.sounds.last_played if app.sounds else None,
            "busy": bool(app.worker and app.worker.busy),
            "language": app.lang,
        }

    def _widget(self, path: str, within: dict[str, Any] | None) -> Widget:
        root = self.app.root
        if path == "status":
            return root.ids.statusbar
        if path.startswith("status."):
            return _resolve(root.ids.statusbar, path.removeprefix("status."))
        screen = root.ids.screens.current_screen
        base = _find(screen, within) if within else screen
        return _resolve(base, path)

    def press(self, path: str, within: dict[str, Any] | None) -> None:
        widget = self._widget(path, within)
        if widget.disabled or widget.opacity == 0:
            raise ControlError(f"{path!r} is disabled or hidden")
        x, y = widget.to_window(*widget.center)
        finger = _Finger(x, y)
        EventLoop.post_dispatch_input("begin", finger)
        EventLoop.post_dispatch_input("end", finger)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self.path.unlink(missing_ok=True)
