"""Bags on live topics: `Player` publishes a bag with its recorded timing (like `ros2 bag play`),
`Recorder` writes live topics to a rosbag2 (like `ros2 bag record`). Both run on any rclpy node, so
the CLI (`depth-ros bag play|record`) and the demo share them.

Messages stay serialized end to end: the player publishes the bag's CDR bytes as they are and the
recorder subscribes raw, so neither pays for (de)serialising megabyte images.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_ros.bagio import BagError, BagReader, BagWriter, RawMessage, message_class


def qos_profile(reliable: bool, depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


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


class Player:
    """Publishes a bag's messages on live topics, spaced by their recorded timestamps / rate."""

    def __init__(self, node: Any, bag: str | Path, options: PlayOptions | None = None,
                 on_publish: Callable[[RawMessage, int], None] | None = None, log: Callable[[str], None] = print):
        self.node = node
        self.bag = Path(bag)
        self.options = options or PlayOptions()
        if not self.options.rate > 0:
            raise ValueError(f"--rate must be > 0, got {self.options.rate}")
        self.on_publish = on_publish
        self.published = 0
        self._stop = threading.Event()
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
        """Publish until the bag (or the loops) end or stop() is called; returns messages published."""
        passes = 0
        while not self._stop.is_set():
            self._play_once()
            passes += 1
            if not self.options.loop or (self.options.loops is not None and passes >= self.options.loops):
                break
        return self.published

    def _play_once(self) -> None:
        rate = self.options.rate
        with BagReader(self.bag) as reader:
            begin: int | None = None
            start_wall = 0.0
            offset_ns = int(self.options.start_offset_s * 1e9)
            first_ns: int | None = None
            for raw in reader.messages(self.topics):
                if first_ns is None:
                    first_ns = raw.timestamp_ns
                if raw.timestamp_ns - first_ns < offset_ns:
                    continue
                if begin is None:
                    begin, start_wall = raw.timestamp_ns, time.monotonic()
                due = start_wall + (raw.timestamp_ns - begin) / 1e9 / rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                self._publishers[raw.topic].publish(raw.data)
                self.published += 1
                if self.on_publish is not None:
                    self.on_publish(raw, time.time_ns())


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


class Recorder:
    """Writes every message of the given topics to a BagWriter, stamped with its receive time."""

    def __init__(self, node: Any, writer: BagWriter, topics: dict[str, str], reliable: bool = False,
                 qos_depth: int = 50, on_message: Callable[[str, bytes, int], None] | None = None):
        self.writer = writer
        self.topics = dict(topics)
        self.on_message = on_message
        self.counts: dict[str, int] = {t: 0 for t in topics}
        self._lock = threading.Lock()  # a multi-threaded executor may call back concurrently
        self._closed = False
        # Best effort by default: it matches both reliable and best-effort publishers (ros2 bag record adapts too).
        qos = qos_profile(reliable, qos_depth)
        self._subscriptions = [
            node.create_subscription(message_class(msgtype), topic, self._callback(topic, msgtype), qos, raw=True)
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
