"""Bags on live topics: `Player` publishes a bag with its recorded timing (like `ros2 bag play`),
`Recorder` writes live topics to a rosbag2 (like `ros2 bag record`). Both run on any rclpy node, so
the CLI (`depth-ros bag play|record`) and the demo share them.

Messages stay serialized end to end: the player publishes the bag's CDR bytes as they are and the
recorder subscribes raw, so neither pays for (de)serialising megabyte images.

Playback runs on a `PlaybackClock`: bag time at the playback position, advancing at `rate` times
the (monotonic) wall clock, standing still while paused and jumping back to the start at each loop.
With `PlayOptions.clock_hz` the player publishes that time on /clock (rosgraph_msgs/msg/Clock, the
QoS of `ros2 bag play --clock`) for nodes running with `use_sim_time: true`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_ros.bags.io import BagError, BagReader, BagWriter, RawMessage, message_class

CLOCK_TOPIC = "/clock"
DEFAULT_CLOCK_HZ = 40.0  # ros2 bag play --clock without a value


def qos_profile(reliable: bool, depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def clock_qos() -> Any:
    """The QoS `ros2 bag play` publishes /clock with (rclcpp::ClockQoS: sensor data, keep last 1):
    best effort, volatile, keep last 1. rclpy's and rclcpp's /clock subscriptions match it."""
    return qos_profile(reliable=False, depth=1)


class PlaybackClock:
    """Bag time (ns) at the playback position, driven by a monotonic wall clock.

    It advances ``rate`` bag seconds per wall second, stands still while paused (and resumes from
    where it stood: the pause adds no bag time) and `jump`s where playback restarts. Thread-safe;
    its `condition` also serialises publishing, so what the player publishes is ordered in bag time.
    """

    def __init__(self, start_ns: int = 0, rate: float = 1.0, paused: bool = False,
                 wall: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.condition = threading.Condition()
        self._wall = wall
        self._anchor_ns = start_ns
        self._anchor_wall = wall()
        self._paused = paused

    def now_ns_locked(self) -> int:
        if self._paused:
            return self._anchor_ns
        return self._anchor_ns + int((self._wall() - self._anchor_wall) * self.rate * 1e9)

    def now_ns(self) -> int:
        with self.condition:
            return self.now_ns_locked()

    @property
    def paused(self) -> bool:
        with self.condition:
            return self._paused

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume; returns whether that changed anything."""
        with self.condition:
            if paused == self._paused:
                return False
            self._anchor_ns = self.now_ns_locked()
            self._anchor_wall = self._wall()
            self._paused = paused
            self.condition.notify_all()
            return True

    def jump(self, bag_ns: int) -> None:
        """Continue from ``bag_ns`` (paused or not, as before)."""
        with self.condition:
            self._anchor_ns, self._anchor_wall = bag_ns, self._wall()
            self.condition.notify_all()

    def wake(self) -> None:
        with self.condition:
            self.condition.notify_all()

    def wait_until_locked(self, bag_ns: int, stop: threading.Event, max_wait_s: float = 0.25) -> bool:
        """With `condition` held: wait until the clock reaches ``bag_ns`` while playing; False if stopped.

        Returns with the lock held and the clock playing at or past ``bag_ns``, so whatever the caller
        publishes before releasing it cannot be overtaken by a pause.
        """
        while not stop.is_set():
            if self._paused:
                self.condition.wait(max_wait_s)
                continue
            left_s = (bag_ns - self.now_ns_locked()) / 1e9 / self.rate
            if left_s <= 0:
                return True
            self.condition.wait(min(left_s, max_wait_s))
        return False


@dataclass
class PlayOptions:
    topics: list[str] | None = None  # None = every topic whose message type is installed
    rate: float = 1.0  # playback speed factor
    loop: bool = False
    loops: int | None = None  # with loop: stop after this many passes (None = until stopped)
    start_offset_s: float = 0.0  # skip this much of the bag's beginning
    reliable: bool = False  # default: sensor-data QoS (best effort), what depth_node subscribes with
    qos_depth: int = 10
    remap: dict[str, str] | None = None  # bag topic -> published topic
    clock_hz: float = 0.0  # > 0: publish the playback time on /clock at this rate and before each message
    start_paused: bool = False


class Player:
    """Publishes a bag's messages on live topics, spaced by their recorded timestamps / rate."""

    def __init__(self, node: Any, bag: str | Path, options: PlayOptions | None = None,
                 on_publish: Callable[[RawMessage, int], None] | None = None, log: Callable[[str], None] = print):
        self.node = node
        self.bag = Path(bag)
        self.options = options or PlayOptions()
        if not self.options.rate > 0:
            raise ValueError(f"--rate must be > 0, got {self.options.rate}")
        if not (self.options.clock_hz >= 0 and math.isfinite(self.options.clock_hz)):
            raise ValueError(f"--clock must be a rate > 0 Hz, got {self.options.clock_hz}")
        self.on_publish = on_publish
        self.log = log
        self.published = 0
        self._stop = threading.Event()
        self.clock = PlaybackClock(rate=self.options.rate, paused=self.options.start_paused)
        self._clock_publisher: Any = None
        self._clock_thread: threading.Thread | None = None
        self._clock_done = threading.Event()
        self._services: list[Any] = []
        from rclpy.exceptions import InvalidTopicNameException

        remap = self.options.remap or {}
        not_played: list[str] = []
        with BagReader(self.bag) as reader:
            if self.options.topics:
                reader.require(self.options.topics)
            wanted = self.options.topics or list(reader.topics)
            self._publishers: dict[str, Any] = {}
            for topic in wanted:
                msgtype = reader.topics[topic].msgtype
                try:
                    cls = message_class(msgtype)
                    self._publishers[topic] = node.create_publisher(
                        cls, remap.get(topic, topic), qos_profile(self.options.reliable, self.options.qos_depth))
                except (BagError, InvalidTopicNameException) as exc:
                    # ROS 1 bags carry names ROS 2 rejects ('/tf/0', spaces) and driver-specific types.
                    reason = str(exc).splitlines()[0] if isinstance(exc, BagError) else "not a valid ROS 2 topic name"
                    if self.options.topics:
                        raise BagError(f"cannot play {topic}: {reason} "
                                       f"(use --remap {topic}:=NEW_NAME for names)") from exc
                    not_played.append(f"{topic} ({reason})")
        if not_played:
            log(f"bag play: not playing {len(not_played)} topics: {'; '.join(not_played)}")
        if not self._publishers:
            raise BagError(f"nothing to play in {self.bag}")
        if self.options.clock_hz > 0:
            from rosgraph_msgs.msg import Clock

            self._clock_publisher = node.create_publisher(Clock, CLOCK_TOPIC, clock_qos())

    @property
    def topics(self) -> list[str]:
        return list(self._publishers)

    def wait_for_subscribers(self, timeout_s: float, settle_s: float = 0.5, topics: list[str] | None = None) -> bool:
        """Wait until every topic (or ``topics``) has a subscriber, then ``settle_s`` more.

        The settle time lets the subscriber's side of the match complete too: best-effort samples
        sent before it has matched this writer are lost.
        """
        deadline = time.monotonic() + timeout_s
        publishers = [self._publishers[t] for t in (topics or self._publishers)]
        while any(p.get_subscription_count() == 0 for p in publishers):
            if time.monotonic() > deadline or self._stop.is_set():
                return False
            time.sleep(0.05)
        self._stop.wait(settle_s)
        return True

    def stop(self) -> None:
        self._stop.set()
        self.clock.wake()

    # ----------------------------------------------------------------- pause / resume
    @property
    def paused(self) -> bool:
        return self.clock.paused

    def pause(self) -> bool:
        """Stop publishing (the clock stands still); returns False when already paused."""
        changed = self.clock.set_paused(True)
        if changed:
            self.log(f"bag play: paused at {self._describe_time()}")
        return changed

    def resume(self) -> bool:
        """Continue from where playback stood; returns False when not paused."""
        changed = self.clock.set_paused(False)
        if changed:
            self.log(f"bag play: resumed at {self._describe_time()}")
        return changed

    def toggle_paused(self) -> bool:
        """Pause when playing, resume when paused; returns the new state (True = paused)."""
        with self.clock.condition:  # reentrant: one decision and one change
            if self.clock.paused:
                self.resume()
            else:
                self.pause()
            return self.clock.paused

    def _describe_time(self) -> str:
        return f"bag time {self.clock.now_ns() / 1e9:.9f} s"

    def create_control_services(self) -> list[Any]:
        """`~/pause`, `~/resume`, `~/toggle_paused`, `~/is_paused` (std_srvs/srv/Trigger) on the node.

        The names are those of `ros2 bag play`'s services (rosbag2_interfaces, not on PyPI, hence
        Trigger). Each answers success=True and a message that starts with the state after the call,
        'paused' or 'playing', then the bag time. The node must be spun (an executor) to serve them.
        """
        from std_srvs.srv import Trigger

        def service(action: Callable[[], object]) -> Callable[[Any, Any], Any]:
            def callback(request: Any, response: Any) -> Any:
                with self.clock.condition:
                    action()
                    state = "paused" if self.clock.paused else "playing"
                    response.success, response.message = True, f"{state} at {self._describe_time()}"
                return response
            return callback

        actions: dict[str, Callable[[], object]] = {
            "pause": self.pause, "resume": self.resume, "toggle_paused": self.toggle_paused,
            "is_paused": lambda: None}
        self._services += [self.node.create_service(Trigger, f"~/{name}", service(action))
                           for name, action in actions.items()]
        return self._services

    # ----------------------------------------------------------------- /clock
    def _publish_clock_locked(self) -> None:
        """Publish the clock's time now (with `clock.condition` held, so publishes stay in time order)."""
        if self._clock_publisher is None:
            return
        from rosgraph_msgs.msg import Clock

        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(max(self.clock.now_ns_locked(), 0), 10**9)
        self._clock_publisher.publish(msg)

    def _start_clock_thread(self) -> None:
        if self._clock_publisher is None or self._clock_thread is not None:
            return
        self._clock_done.clear()
        self._clock_thread = threading.Thread(target=self._clock_loop, name="bag_play_clock", daemon=True)
        self._clock_thread.start()

    def _clock_loop(self) -> None:
        period = 1.0 / self.options.clock_hz
        due = time.monotonic()
        while True:
            due += period
            if self._clock_done.wait(max(0.0, due - time.monotonic())):
                return
            due = max(due, time.monotonic() - period)  # after a stall: on schedule again, no burst
            try:
                with self.clock.condition:
                    self._publish_clock_locked()
            except Exception:
                if self.node.context.ok():
                    raise
                return  # the context was shut down (Ctrl-C): the clock ends with the process

    def _stop_clock_thread(self) -> None:
        self._clock_done.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=5.0)
            self._clock_thread = None

    def wait_for_all_acked(self, timeout_s: float) -> bool:
        """With reliable QoS: wait until every subscriber acknowledged what was published.

        Exiting right after the last publish destroys the writers while a megabyte image may still
        be in flight or due for a resend, and the subscriber never gets it. Best effort: no-op.
        """
        if not self.options.reliable:
            return True
        from rclpy.duration import Duration

        deadline = time.monotonic() + timeout_s
        for publisher in self._publishers.values():
            left = max(0.0, deadline - time.monotonic())
            if not publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
                return False
        return True

    def play(self) -> int:
        """Publish until the bag (or the loops) end or stop() is called; returns messages published.

        Each pass starts the clock at its first message (the first at or after --start-offset) and
        publishes every message once the clock reaches its recorded time: ``rate`` scales the gaps,
        a pause holds the clock and playback, and with --loop the clock jumps back at every pass.
        """
        passes = 0
        try:
            while not self._stop.is_set():
                if not self._play_once():
                    break  # nothing at or after the start offset: looping would spin
                passes += 1
                if not self.options.loop or (self.options.loops is not None and passes >= self.options.loops):
                    break
        finally:
            self._stop_clock_thread()
        return self.published

    def _play_once(self) -> bool:
        """One pass; returns whether it had anything to play."""
        with BagReader(self.bag) as reader:
            begin: int | None = None
            offset_ns = int(self.options.start_offset_s * 1e9)
            first_ns: int | None = None
            for raw in reader.messages(self.topics):
                if first_ns is None:
                    first_ns = raw.timestamp_ns
                if raw.timestamp_ns - first_ns < offset_ns:
                    continue
                with self.clock.condition:
                    if begin is None:
                        begin = raw.timestamp_ns
                        self.clock.jump(begin)  # the start, or back to it (loop)
                        self._publish_clock_locked()
                        self._start_clock_thread()
                    if not self.clock.wait_until_locked(raw.timestamp_ns, self._stop):
                        return True
                    # Clock first: a node on sim time never receives a message from its future.
                    self._publish_clock_locked()
                    self._publishers[raw.topic].publish(raw.data)
                self.published += 1
                if self.on_publish is not None:
                    self.on_publish(raw, time.time_ns())
            return begin is not None


def discover_types(node: Any, topics: list[str], timeout_s: float,
                   should_stop: Callable[[], bool] = lambda: False) -> dict[str, str]:
    """Topic -> 'pkg/msg/Name' from the live graph; waits until every topic is advertised."""
    deadline = time.monotonic() + timeout_s
    while not should_stop():
        known = {name: types[0] for name, types in node.get_topic_names_and_types() if types}
        if all(t in known for t in topics):
            return {t: known[t] for t in topics}
        if time.monotonic() > deadline:
            missing = [t for t in topics if t not in known]
            raise TimeoutError(f"no publisher of {', '.join(missing)} appeared within {timeout_s:.0f} s "
                               "(check the topic names and ROS_DOMAIN_ID)")
        time.sleep(0.1)
    raise KeyboardInterrupt


def offers_reliable(node: Any, topic: str) -> bool:
    """Whether every publisher of ``topic`` in the graph is reliable (False when there is none)."""
    from rclpy.qos import ReliabilityPolicy

    offered = [info.qos_profile.reliability for info in node.get_publishers_info_by_topic(topic)]
    return bool(offered) and all(policy == ReliabilityPolicy.RELIABLE for policy in offered)


class Recorder:
    """Writes every message of the given topics to a BagWriter, stamped with its receive time."""

    def __init__(self, node: Any, writer: BagWriter, topics: dict[str, str], reliable: bool | None = None,
                 qos_depth: int = 50, on_message: Callable[[str, bytes, int], None] | None = None):
        self.writer = writer
        self.topics = dict(topics)
        self.on_message = on_message
        self.counts: dict[str, int] = {t: 0 for t in topics}
        self._lock = threading.Lock()  # a multi-threaded executor may call back concurrently
        self._closed = False
        # reliable None adapts per topic as ros2 bag record does: reliable when every publisher offers it (nothing
        # is lost, and a reliable subscription matches those), best effort otherwise (matches every publisher).
        self.reliability: dict[str, bool] = {
            topic: offers_reliable(node, topic) if reliable is None else reliable for topic in self.topics}
        self._subscriptions = [
            node.create_subscription(message_class(msgtype), topic, self._callback(topic, msgtype),
                                     qos_profile(self.reliability[topic], qos_depth), raw=True)
            for topic, msgtype in self.topics.items()
        ]

    def _callback(self, topic: str, msgtype: str) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:
            now = time.time_ns()
            with self._lock:
                if self._closed:
                    return
                self.writer.write(topic, msgtype, now, bytes(data))
                self.counts[topic] += 1
            if self.on_message is not None:
                self.on_message(topic, data, now)
        return on_message

    def close(self) -> None:
        """Stop writing (call before closing the writer; late callbacks are ignored)."""
        with self._lock:
            self._closed = True
