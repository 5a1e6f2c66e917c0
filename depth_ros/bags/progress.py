"""A minimal one-line progress bar on stderr: done/total, frames/s and ETA.

Silent unless the stream is a terminal (logs and pipes stay clean) or when disabled.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    def __init__(self, total: int, unit: str = "frames", stream: TextIO | None = None,
                 enabled: bool | None = None, min_interval_s: float = 0.2, width: int = 24) -> None:
        self.total = max(0, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._min_interval = min_interval_s
        self._width = width

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        filled = int(round(fraction * self._width))
        eta = (self.total - self.done) / rate if rate > 0 and self.total else float("nan")
        return (f"[{'#' * filled}{'.' * (self._width - filled)}] {self.done}/{self.total} {self.unit} "
                f"{100 * fraction:3.0f}%  {rate:.1f} {self.unit}/s  ETA {format_duration(eta)}")

    def update(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= self._min_interval or self.done >= self.total:
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
