"""PipelineStats and RateMeter on an injected clock: wall time, sim time standing still (a paused
bag) and sim time jumping back (a looped bag). The fake clock is the only time source, so every
expected value is exact arithmetic."""

from __future__ import annotations

import threading

import pytest

from depth_ros.ros.diagnostics import PipelineStats, RateMeter


class FakeClock:
    """Seconds that move only when the test says so (as /clock does under use_sim_time)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def values(stats: PipelineStats) -> dict[str, str]:
    return dict(stats.snapshot())


def feed(stats: PipelineStats, clock: FakeClock, frames: int, period_s: float) -> None:
    """``frames`` frames received and published ``period_s`` apart on the clock, the first one now."""
    for i in range(frames):
        if i:
            clock.advance(period_s)
        stats.frame_received()
        stats.frame_published({"total": 0.01})


# ----------------------------------------------------------------------------- RateMeter

def test_rate_meter_counts_events_per_second_of_clock_time() -> None:
    clock = FakeClock(0.0)
    meter = RateMeter(window_s=5.0, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(11):  # 10 intervals of 0.1 s
        meter.tick()
        clock.advance(0.1)
    clock.now = 1.0  # the last tick was at 1.0 (float steps drift; pin it)
    assert meter.rate() == pytest.approx(10.0)
    clock.advance(1.0)  # no events for 1 s: 10 intervals over 2 s
    assert meter.rate() == pytest.approx(5.0)
    clock.advance(10.0)  # everything left the window
    assert meter.rate() == 0.0


def test_rate_meter_explicit_times_still_work() -> None:
    meter = RateMeter(window_s=5.0, clock=lambda: pytest.fail("explicit times must not read the clock"))
    for t in (10.0, 10.5, 11.0):
        meter.tick(t)
    assert meter.rate(11.0) == pytest.approx(2.0)


def test_rate_meter_restarts_when_the_clock_goes_backwards() -> None:
    clock = FakeClock(50.0)
    meter = RateMeter(window_s=5.0, clock=clock)
    for _ in range(5):
        meter.tick()
        clock.advance(0.25)
    clock.now = 1.0  # the bag looped: sim time is back at its start
    assert meter.rate() == 0.0  # not (4 / (1 - 50)) < 0, not the old window
    meter.tick()
    clock.advance(0.5)
    meter.tick()
    assert meter.rate() == pytest.approx(2.0)  # only the events since the jump
    meter.tick(0.2)  # an event stamped before the newest one: restart too
    assert meter.rate(0.2) == 0.0
    meter.tick(0.4)
    assert meter.rate(0.4) == pytest.approx(5.0)


def test_rate_meter_events_at_one_instant_give_no_rate() -> None:
    meter = RateMeter(clock=FakeClock(3.0))
    for _ in range(4):
        meter.tick()
    assert meter.rate() == 0.0  # a zero span, not 3 / 1e-9


def test_rate_meter_rejects_a_useless_window() -> None:
    with pytest.raises(ValueError):
        RateMeter(window_s=0.0)


# ----------------------------------------------------------------------------- PipelineStats

def test_default_clock_is_monotonic_wall_time() -> None:
    stats = PipelineStats()
    stats.frame_received()
    stats.frame_skipped("decode_error", "bad frame")
    assert stats.recent_problem(within_s=60.0) == "bad frame"
    assert values(stats)["frames_received"] == "1"


def test_rates_are_measured_on_the_injected_clock() -> None:
    clock = FakeClock()
    stats = PipelineStats(clock=clock)
    feed(stats, clock, frames=21, period_s=0.05)  # 20 Hz over 1 s of clock time
    got = values(stats)
    assert float(got["input_rate_hz"]) == pytest.approx(20.0, rel=1e-6)
    assert float(got["output_rate_hz"]) == pytest.approx(20.0, rel=1e-6)
    assert got["frames_received"] == got["frames_published"] == "21"
    assert clock.reads > 0


def test_paused_clock_keeps_the_rate_it_had() -> None:
    """A paused bag: sim time stands still while wall time passes; nothing ages, nothing decays."""
    clock = FakeClock()
    stats = PipelineStats(clock=clock)
    feed(stats, clock, frames=11, period_s=0.1)
    stats.frame_skipped("no_camera_info", "no CameraInfo yet")
    before = values(stats)
    assert float(before["input_rate_hz"]) == pytest.approx(10.0, rel=1e-6)
    for _ in range(50):  # however long the pause (in wall time): the clock does not move
        assert values(stats) == before
        assert stats.recent_problem(within_s=5.0) == "no CameraInfo yet"
    clock.advance(0.1)  # resumed: frames continue at the same clock rate
    stats.frame_received()
    stats.frame_published({"total": 0.01})
    assert float(values(stats)["input_rate_hz"]) == pytest.approx(10.0, rel=1e-6)


def test_looped_bag_restarts_the_rate_windows() -> None:
    """Sim time jumps back to the bag's start: rates restart from the frames after the jump."""
    clock = FakeClock(1000.0)
    stats = PipelineStats(clock=clock)
    feed(stats, clock, frames=31, period_s=0.1)
    assert float(values(stats)["input_rate_hz"]) == pytest.approx(10.0, rel=1e-6)

    clock.now = 1000.0  # the loop: back to the start
    got = values(stats)
    assert float(got["input_rate_hz"]) == 0.0 and float(got["output_rate_hz"]) == 0.0  # no negative rate
    assert got["frames_received"] == "31"  # counters are totals: untouched
    feed(stats, clock, frames=5, period_s=0.25)  # the next pass, played at 4 Hz
    got = values(stats)
    assert float(got["input_rate_hz"]) == pytest.approx(4.0, rel=1e-6)
    assert float(got["output_rate_hz"]) == pytest.approx(4.0, rel=1e-6)
    assert got["frames_received"] == "36"
    for key in ("input_rate_hz", "output_rate_hz"):
        assert float(got[key]) >= 0.0


def test_jump_back_seen_first_by_a_frame_restarts_too() -> None:
    clock = FakeClock(500.0)
    stats = PipelineStats(clock=clock)
    feed(stats, clock, frames=11, period_s=0.1)
    clock.now = 10.0
    feed(stats, clock, frames=3, period_s=0.5)  # the jump is noticed by frame_received, not snapshot
    assert float(values(stats)["input_rate_hz"]) == pytest.approx(2.0, rel=1e-6)


def test_recent_problem_ages_on_the_clock_and_keeps_its_age_across_a_jump_back() -> None:
    clock = FakeClock(200.0)
    stats = PipelineStats(clock=clock)
    assert stats.recent_problem(within_s=5.0) is None
    stats.frame_skipped("decode_error", "cannot decode frame")
    clock.advance(3.0)
    assert stats.recent_problem(within_s=5.0) == "cannot decode frame"  # 3 s old
    clock.now = 1.0  # loop: 3 s old when the clock was last read, still 3 s old now
    assert stats.recent_problem(within_s=5.0) == "cannot decode frame"
    clock.advance(1.5)  # 4.5 s
    assert stats.recent_problem(within_s=5.0) == "cannot decode frame"
    clock.advance(1.0)  # 5.5 s
    assert stats.recent_problem(within_s=5.0) is None
    assert values(stats)["last_problem"] == "cannot decode frame"  # still reported as the last one


def test_recent_problem_does_not_expire_while_paused() -> None:
    clock = FakeClock(7.0)
    stats = PipelineStats(clock=clock)
    stats.frame_skipped("stale_reference", "reference too old")
    clock.advance(4.0)
    for _ in range(100):
        assert stats.recent_problem(within_s=5.0) == "reference too old"


def test_concurrent_updates_with_an_injected_clock() -> None:
    clock = FakeClock(0.0)
    lock = threading.Lock()

    def ticking() -> float:
        with lock:
            clock.advance(0.001)
            return clock.now

    stats = PipelineStats(clock=ticking)

    def work() -> None:
        for _ in range(500):
            stats.frame_received()
            stats.frame_published({"total": 0.001})
            stats.snapshot()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = values(stats)
    assert got["frames_received"] == got["frames_published"] == "2000"
    assert float(got["input_rate_hz"]) > 0.0
