"""`depth-ros bag play --clock` and its pause/resume services, on the real D435 capture over Fast DDS.

The player runs as its own process (the CLI, as a user runs it) in a ROS domain reserved for this
module; the test listens with its own rclpy context in that domain: /clock (best effort, as the
player offers it) and the played images (raw, reliable: none may be lost, so counts are exact).
Every image is identified by its header stamp, which the bag maps to its recorded time, so the
assertions are on bag time (recorded times), never on how fast the machine is.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import RUN_DIR, ros_env
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from depth_ros.bags.io import read_raw
from depth_ros.bags.play import PlaybackClock
from depth_ros.cli.demo import write_frame_sequence
from depth_ros.ros.dds import release_domain_id, reserve_domain_id

REPO = Path(__file__).resolve().parents[2]
D435_BAG = REPO / "data" / "realsense_d435" / "d435_rosbag2"
COLOR = "/device_0/sensor_1/Color_0/image/data"
DEPTH = "/device_0/sensor_0/Depth_0/image/data"
COLOR_INFO = "/device_0/sensor_1/Color_0/info/camera_info"
IMAGES = [DEPTH, COLOR]
SERVICES = "/depth_ros_bag_play"  # the player's node: its services are <node>/pause, ...
TIMEOUT_S = 60.0


def stamp_of(cdr: bytes) -> int:
    """header.stamp (ns) of a serialized message starting with a Header (4 bytes encapsulation first)."""
    order: Literal["little", "big"] = "little" if cdr[1] == 1 else "big"
    return int.from_bytes(cdr[4:8], order, signed=True) * 10**9 + int.from_bytes(cdr[8:12], order)


def recorded_times(bag: Path, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, header stamp) -> recorded time, for every message of ``topics``."""
    times: dict[tuple[str, int], int] = {}
    for raw in read_raw(bag, topics):
        key = (raw.topic, stamp_of(raw.data))
        assert key not in times, f"{bag}: two messages on {raw.topic} with stamp {key[1]}"
        times[key] = raw.timestamp_ns
    return times


@pytest.fixture(scope="module")
def domain() -> Iterator[int]:
    domain_id = reserve_domain_id()
    yield domain_id
    release_domain_id(domain_id)


@dataclass
class Event:
    kind: str  # "clock" or "image"
    ns: int  # clock: its time; image: the message's recorded time in the bag
    wall: float  # time.monotonic() when the test received it
    topic: str = ""


@dataclass
class Listener:
    """The test's own rclpy context in the reserved domain: /clock, the played images, the services."""

    domain_id: int
    topics: list[str]
    times: dict[tuple[str, int], int]
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.node = rclpy.create_node("bag_clock_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # /clock first: when a clock sample and an image are ready together, the clock is taken first.
        clock_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                               durability=DurabilityPolicy.VOLATILE)
        self.node.create_subscription(Clock, "/clock", self._on_clock, clock_qos)
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.VOLATILE)
        for topic in self.topics:
            self.node.create_subscription(Image, topic, self._on_image(topic), image_qos, raw=True)

    def _on_clock(self, msg: Clock) -> None:
        self.events.append(Event("clock", msg.clock.sec * 10**9 + msg.clock.nanosec, time.monotonic()))

    def _on_image(self, topic: str) -> Callable[[bytes], None]:
        def callback(data: bytes) -> None:
            recorded = self.times[(topic, stamp_of(bytes(data)))]
            self.events.append(Event("image", recorded, time.monotonic(), topic))
        return callback

    def spin_until(self, done: Callable[[], bool], timeout_s: float, what: str, player: Player | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{player.output() if player else ''}")
            self.executor.spin_once(timeout_sec=0.01)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def clocks(self, since: int = 0) -> list[int]:
        return [e.ns for e in self.events[since:] if e.kind == "clock"]

    def images(self, since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if e.kind == "image"]

    def call(self, service: str, player: Player) -> str:
        """Call one of the player's Trigger services; returns its message."""
        client: Any = self.node.create_client(Trigger, f"{SERVICES}/{service}")
        try:
            self.spin_until(lambda: client.service_is_ready(), TIMEOUT_S, f"service {service}", player)
            future = client.call_async(Trigger.Request())
            self.spin_until(future.done, TIMEOUT_S, f"answer of {service}", player)
            response = future.result()
            assert response is not None and response.success, (service, response)
            return str(response.message)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@dataclass
class Player:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self, interrupt: bool = False, timeout_s: float = TIMEOUT_S) -> str:
        if interrupt and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"bag play did not exit:\n{self.output()}") from None
        text = self.output()
        assert self.process.returncode == 0, text
        assert "Traceback" not in text, text
        return text


_player_logs = itertools.count()


def start_player(domain_id: int, bag: Path, *args: str) -> Player:
    """`depth-ros bag play BAG --clock --reliable ...`, holding playback until the listener subscribed."""
    env = ros_env(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    log = RUN_DIR / f"bag_play_{next(_player_logs)}.log"  # removed with the run's directory
    command = [sys.executable, "-m", "depth_ros.cli", "bag", "play", str(bag), "--clock", "--reliable",
               "--wait-for-subscribers", str(TIMEOUT_S), *args]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return Player(process, log)


@pytest.fixture
def listener_factory(domain: int) -> Iterator[Callable[[list[str], dict[tuple[str, int], int]], Listener]]:
    made: list[Listener] = []

    def make(topics: list[str], times: dict[tuple[str, int], int]) -> Listener:
        listener = Listener(domain, topics, times)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


def clock_before_each_image(events: list[Event]) -> list[tuple[Event, int | None]]:
    """Each image with the newest clock value received before it (None: no clock yet)."""
    pairs, clock = [], None
    for event in events:
        if event.kind == "clock":
            clock = event.ns
        else:
            pairs.append((event, clock))
    return pairs


# ----------------------------------------------------------------------------- the playback clock

class FakeWall:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_playback_clock_runs_at_rate_stands_still_when_paused_and_jumps() -> None:
    wall = FakeWall()
    clock = PlaybackClock(start_ns=1_000, rate=2.0, wall=wall)
    wall.now += 0.5
    assert clock.now_ns() == 1_000 + 1_000_000_000  # 0.5 s of wall time at 2x
    assert clock.set_paused(True) and not clock.set_paused(True)
    wall.now += 100.0
    assert clock.now_ns() == 1_000 + 1_000_000_000  # frozen, however long
    assert clock.set_paused(False) and not clock.set_paused(False)
    wall.now += 0.25
    assert clock.now_ns() == 1_000 + 1_500_000_000  # from where it stood: the pause added nothing
    clock.jump(1_000)  # a loop
    assert clock.now_ns() == 1_000
    clock.set_paused(True)
    clock.jump(7)  # paused stays paused
    wall.now += 1.0
    assert clock.now_ns() == 7 and clock.paused


def test_playback_clock_wait_returns_when_due_and_never_while_paused() -> None:
    clock = PlaybackClock(start_ns=0, rate=1.0)
    stop = threading.Event()
    with clock.condition:
        assert clock.wait_until_locked(0, stop)  # due now
        assert clock.wait_until_locked(-5, stop)  # overdue
    clock.set_paused(True)
    threading.Timer(0.3, stop.set).start()
    with clock.condition:
        assert not clock.wait_until_locked(0, stop, max_wait_s=0.05)  # paused: only the stop ends the wait
    with pytest.raises(ValueError):
        PlaybackClock(rate=0.0)


# ----------------------------------------------------------------------------- over DDS

def test_clock_follows_the_bags_recorded_time(domain: int, listener_factory: Callable[..., Listener]) -> None:
    times = recorded_times(D435_BAG, IMAGES)
    bag_start = min(raw.timestamp_ns for raw in read_raw(D435_BAG))
    first_played, last_played = min(times.values()), max(times.values())
    listener = listener_factory(IMAGES, times)
    player = start_player(domain, D435_BAG, "--topics", *IMAGES)
    listener.spin_until(lambda: player.process.poll() is not None, TIMEOUT_S, "playback", player)
    listener.spin_for(0.5)  # the last samples in flight
    output = player.finish()
    assert "published 3 messages" in output and "/clock at 40 Hz" in output, output

    clocks = listener.clocks()
    assert clocks, f"no /clock received\n{output}"
    assert clocks[0] >= bag_start and clocks[0] >= first_played, (clocks[0], bag_start, first_played)
    assert all(a <= b for a, b in zip(clocks, clocks[1:], strict=False)), f"/clock went backwards: {clocks}"
    # Bag time, not the machine's clock: the recorded times span 0.17 s from ~0 (epoch).
    assert clocks[-1] < last_played + 10**9, clocks[-1]

    pairs = clock_before_each_image(listener.events)
    assert sorted(e.ns for e, _ in pairs) == sorted(times.values()), pairs  # every image, once
    for image, clock in pairs:
        assert clock is not None and clock >= image.ns, \
            f"{image.topic} recorded at {image.ns} ns arrived with the clock at {clock} ns"


def test_loop_jumps_the_clock_back_to_the_start_once_per_pass(domain: int,
                                                              listener_factory: Callable[..., Listener]) -> None:
    times = recorded_times(D435_BAG, IMAGES)
    first_played, last_played = min(times.values()), max(times.values())
    color_time = times[next(key for key in times if key[0] == COLOR)]
    listener = listener_factory(IMAGES, times)
    player = start_player(domain, D435_BAG, "--topics", *IMAGES, "--loop")

    def jumps() -> list[int]:
        clocks = listener.clocks()
        return [i for i in range(1, len(clocks)) if clocks[i] < clocks[i - 1]]

    try:
        listener.spin_until(lambda: len(jumps()) >= 3, TIMEOUT_S, "three loops", player)
    finally:
        player.finish(interrupt=True)  # Ctrl-C ends a looping playback, exit 0
    listener.spin_for(0.3)

    clocks, at = listener.clocks(), jumps()
    assert len(at) >= 3
    for i in at:
        # A pass ends once its last message is out (the clock reached it), then the clock restarts
        # at the first message of the next pass, before the next image is due.
        assert clocks[i - 1] >= last_played, (clocks[i - 1], last_played)
        assert first_played <= clocks[i] < color_time, (clocks[i], first_played, color_time)
    passes_started = len(at) + 1
    colour_frames = sum(1 for e in listener.images() if e.topic == COLOR)
    assert colour_frames in (passes_started - 1, passes_started), (colour_frames, passes_started)
    for image, clock in clock_before_each_image(listener.events):
        assert clock is not None and clock >= image.ns, (image, clock)


def test_pause_freezes_the_clock_and_resume_continues_where_it_stopped(
        domain: int, listener_factory: Callable[..., Listener], tmp_path: Path) -> None:
    # 40 copies of the real colour frame (own header stamps), 0.1 s apart: long enough to pause mid-way.
    raw = {m.topic: m for m in read_raw(D435_BAG, [COLOR, COLOR_INFO])}
    bag = tmp_path / "sequence"
    write_frame_sequence(bag, raw[COLOR], raw[COLOR_INFO], 40, 0.1)
    times = recorded_times(bag, [COLOR])
    order = sorted(times.values())
    listener = listener_factory([COLOR], times)
    player = start_player(domain, bag, "--topics", COLOR)
    try:
        listener.spin_until(lambda: len(listener.images()) >= 3, TIMEOUT_S, "the first frames", player)
        assert listener.call("pause", player).startswith("paused"), player.output()
        listener.spin_for(0.5)  # whatever was published before the pause arrives
        before = listener.images()
        clocks = listener.clocks()
        paused_at = clocks[-1]

        mark = len(listener.events)
        listener.spin_for(1.5)
        frozen = listener.clocks(mark)
        assert len(frozen) >= 2, f"/clock not published while paused: {frozen}"  # 40 Hz: ~60 expected
        assert set(frozen) == {paused_at}, f"the clock moved while paused: {sorted(set(frozen))}"
        assert not listener.images(mark), "images arrived while paused"
        assert listener.call("is_paused", player).startswith("paused")
        assert listener.call("pause", player).startswith("paused")  # pausing again changes nothing

        # Playback so far: the bag's first frames in order, none recorded after the paused time. (The
        # clock may stand at or just past the next frame's time: it was due but not yet out.)
        assert [e.ns for e in before] == order[:len(before)], [e.ns for e in before]
        assert before[-1].ns <= paused_at, (before[-1].ns, paused_at)

        mark = len(listener.events)
        resumed_wall = time.monotonic()
        assert listener.call("toggle_paused", player).startswith("playing")
        listener.spin_until(lambda: len(listener.images(mark)) >= 3, TIMEOUT_S, "frames after resume", player)
        after = listener.events[mark:]
        # From where it stopped: the next frame of the bag, then the following ones; no burst of the
        # frames that fell due during the pause: the bag time since resume never exceeds the wall
        # time since resume (at rate 1), measured from before the resume request.
        after_images = [e for e in after if e.kind == "image"]
        assert [e.ns for e in after_images] == order[len(before):len(before) + len(after_images)]
        for event in after:
            assert event.ns >= paused_at or event.kind == "image", event
            assert event.ns - paused_at <= (event.wall - resumed_wall) * 1e9 + 1e6, \
                f"{event.kind} at bag time {event.ns} ns only {event.wall - resumed_wall:.3f} s after resume " \
                f"from {paused_at} ns"
        assert listener.call("resume", player).startswith("playing")
        listener.spin_until(lambda: player.process.poll() is not None, TIMEOUT_S, "the end of playback", player)
        listener.spin_for(0.5)
    finally:
        output = player.finish(interrupt=player.process.poll() is None)
    assert "published 40 messages" in output and "paused at" in output and "resumed at" in output, output
    assert [e.ns for e in listener.images()] == order  # every frame exactly once, in order
    clocks = listener.clocks()
    assert all(a <= b for a, b in zip(clocks, clocks[1:], strict=False)), "/clock went backwards"
