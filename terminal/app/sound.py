"""Approved and declined sounds, so the result is heard over a busy shop.

Two short rising beeps mean approved; one long low buzz means declined. The two
differ in pitch, rhythm and length, so nobody needs to tell them apart by a
single feature. The WAV files are generated once into the data directory
(square-ish waves carry better than sines through noise) instead of being
shipped as binaries. A till without a sound device stays silent and works on.
"""

from __future__ import annotations

import logging
import math
import struct
import wave
from pathlib import Path
from typing import Any

from hcard.terminal.till import Outcome

log = logging.getLogger(__name__)

RATE_HZ = 22050
# (frequency in Hz or 0 for a pause, duration in s)
PATTERNS: dict[Outcome, list[tuple[int, float]]] = {
    Outcome.APPROVED: [(1047, 0.11), (0, 0.05), (1568, 0.22)],
    Outcome.DECLINED: [(196, 0.7)],
}


def write_wav(path: Path, pattern: list[tuple[int, float]], volume: float = 0.6) -> None:
    """Write a 16-bit mono WAV of the pattern, with 5 ms fades against clicks."""
    frames = bytearray()
    fade = int(RATE_HZ * 0.005)
    for freq_hz, duration_s in pattern:
        count = int(RATE_HZ * duration_s)
        for i in range(count):
            if not freq_hz:
                frames += struct.pack("<h", 0)
                continue
            # a sine with its third harmonic: fuller than a sine, softer than a square
            phase = 2 * math.pi * freq_hz * i / RATE_HZ
            value = math.sin(phase) + math.sin(3 * phase) / 3
            envelope = min(1.0, i / fade, (count - i) / fade)
            frames += struct.pack("<h", int(value * envelope * volume * 0.75 * 32767))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes(bytes(frames))


class Sounds:
    """Loads the two sounds once; `play` never raises."""

    def __init__(self, directory: Path) -> None:
        self._sounds: dict[Outcome, Any] = {}  # kivy's Sound (kivy has no types)
        self.last_played: Outcome | None = None  # what the test control hook reports
        try:
            from kivy.core.audio import SoundLoader
        except ImportError:  # pragma: no cover - kivy without any audio provider
            return
        for name, pattern in PATTERNS.items():
            path = Path(directory) / f"{name.value}.wav"
            try:
                if not path.exists():
                    write_wav(path, pattern)
                sound = SoundLoader.load(str(path))
            except OSError as exc:
                log.warning("sound %s unavailable: %s", name, exc)
                continue
            if sound is not None:
                self._sounds[name] = sound

    def play(self, outcome: Outcome) -> None:
        self.last_played = outcome
        sound = self._sounds.get(outcome)
        if sound is None:
            return
        try:
            sound.stop()
            sound.play()
        except Exception as exc:  # an audio device can vanish; the till must not
            log.warning("sound %s failed: %s", outcome, exc)
