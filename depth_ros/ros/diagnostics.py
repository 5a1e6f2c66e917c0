"""Pipeline statistics for /diagnostics: rates, frame counters by reason, per-stage latency.

Pure Python (thread-safe); the node turns `snapshot()` into diagnostic_msgs.

Rates and the age of the last problem run on an injectable clock (seconds): `time.monotonic` by
default, the node's ROS clock under `use_sim_time` (a bag played with --clock). Sim time stands
still while the bag is paused (rates keep the value they had, measured over clock time, not wall
time) and jumps back when a bag loops (the rate windows then restart; a problem keeps its age).
Latencies are measured by the caller (wall time) and are not affected.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np


class RateMeter:
    """Events per second over a sliding window of clock time.

    ``now`` defaults to ``clock()``. When the clock goes backwards (a looped bag under sim time) the
    window restarts: the events before the jump are dropped instead of giving a negative or
    meaningless span. Events at one and the same instant give no rate (0) rather than a division by
    a zero span.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_events: int = 1000) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque(maxlen=max_events)

    def restart(self) -> None:
        self._times.clear()

    def _went_back(self, now: float) -> bool:
        if self._times and now < self._times[-1]:
            self.restart()
            return True
        return False

    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._went_back(now)
        self._times.append(now)

    def rate(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        if self._went_back(now):
            return 0.0
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]
        if span <= 0.0:
            return 0.0
        return (len(self._times) - 1) / span


class PipelineStats:
    """Counters and latencies the node updates from its callback and worker threads.

    ``clock`` (seconds) times the input/output rates and `recent_problem`; see the module notes
    for clocks that stand still or jump back.
    """

    def __init__(self, latency_window: int = 200, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._last_now: float | None = None
        self._latency_window = latency_window
        self.received = 0
        self.published = 0
        self.batched = 0  # published frames that shared a forward pass with other cameras' frames
        self.dropped: Counter[str] = Counter()  # frames never processed (superseded by a newer one)
        self.skipped: Counter[str] = Counter()  # frames rejected or failed, by reason
        self.input_rate = RateMeter(clock=clock)
        self.output_rate = RateMeter(clock=clock)
        self._stages: dict[str, deque[float]] = {}
        self._edge_fractions: deque[float] = deque(maxlen=latency_window)  # of each frame's depth pixels
        self.temporal_frames = 0  # frames through the temporal filter, and those it restarted from
        self.temporal_resets = 0
        self.last_problem = ""
        self.last_problem_time = 0.0

    def _now_locked(self) -> float:
        """The clock's time; a jump back restarts the rate windows and keeps the last problem's age."""
        now = self._clock()
        last = self._last_now
        if last is not None and now < last:
            self.input_rate.restart()
            self.output_rate.restart()
            if self.last_problem:
                self.last_problem_time -= last - now  # as old as it was when the clock was last read
        self._last_now = now
        return now

    def frame_received(self) -> None:
        with self._lock:
            self.received += 1
            self.input_rate.tick(self._now_locked())

    def frame_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def frame_skipped(self, reason: str, problem: str) -> None:
        with self._lock:
            self.skipped[reason] += 1
            self.last_problem = problem
            self.last_problem_time = self._now_locked()

    def frame_published(self, timings: dict[str, float]) -> None:
        timings = dict(timings)
        batch = timings.pop("batch", 1.0)  # not a duration: the frames in the forward pass this one ran in
        with self._lock:
            self.published += 1
            self.batched += int(batch > 1)
            self.output_rate.tick(self._now_locked())
            for stage, seconds in timings.items():
                window = self._stages.get(stage)
                if window is None:
                    window = self._stages[stage] = deque(maxlen=self._latency_window)
                window.append(seconds)

    def edges_filtered(self, fraction: float) -> None:
        """The fraction of a frame's depth pixels the edge filter made invalid."""
        with self._lock:
            self._edge_fractions.append(fraction)

    def temporal_filtered(self, reset: bool) -> None:
        """A frame through the temporal filter; ``reset``: the state restarted from it."""
        with self._lock:
            self.temporal_frames += 1
            self.temporal_resets += int(reset)

    def latency_ms(self, stage: str) -> tuple[float, float] | None:
        """(p50, p95) in milliseconds over the recent window, or None."""
        with self._lock:
            values = list(self._stages.get(stage, ()))
        if not values:
            return None
        p50, p95 = np.percentile(values, [50.0, 95.0])
        return float(p50) * 1e3, float(p95) * 1e3

    def snapshot(self) -> list[tuple[str, str]]:
        """Key/value pairs for a DiagnosticStatus."""
        with self._lock:
            now = self._now_locked()
            pairs = [
                ("input_rate_hz", f"{self.input_rate.rate(now):.2f}"),
                ("output_rate_hz", f"{self.output_rate.rate(now):.2f}"),
                ("frames_received", str(self.received)),
                ("frames_published", str(self.published)),
                ("frames_batched", str(self.batched)),
                ("frames_dropped", str(sum(self.dropped.values()))),
                ("frames_skipped", str(sum(self.skipped.values()))),
            ]
            pairs += [(f"dropped_{reason}", str(n)) for reason, n in sorted(self.dropped.items())]
            pairs += [(f"skipped_{reason}", str(n)) for reason, n in sorted(self.skipped.items())]
            if self.temporal_frames:
                pairs.append(("temporal_resets", f"{self.temporal_resets} of {self.temporal_frames} frames"))
            if self._edge_fractions:
                pairs.append(("edge_filtered_fraction", f"{float(np.mean(self._edge_fractions)):.4f}"))
            stages = list(self._stages)
        for stage in stages:
            latency = self.latency_ms(stage)
            if latency is not None:
                pairs.append((f"latency_{stage}_p50_ms", f"{latency[0]:.2f}"))
                pairs.append((f"latency_{stage}_p95_ms", f"{latency[1]:.2f}"))
        if self.last_problem:
            pairs.append(("last_problem", self.last_problem))
        return pairs

    def recent_problem(self, within_s: float) -> str | None:
        with self._lock:
            if self.last_problem and self._now_locked() - self.last_problem_time < within_s:
                return self.last_problem
        return None


class Throttle:
    """Allows one message per key per period and counts the ones it held back."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        """(whether to log now, how many were held back since the last log)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._held[key] += 1
                return False, 0
            self._last[key] = now
            held = self._held.pop(key, 0)
            return True, held
