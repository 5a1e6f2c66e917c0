"""Reading and writing bags (rosbag1, rosbag2 sqlite3/MCAP) with the `rosbags` library.

Messages travel as raw CDR bytes: rclpy's (de)serialize_message turns them into live messages,
so no per-type conversion code exists or is needed. ROS 1 messages are converted to ROS 2 CDR
at the byte level (the ROS 1 header's `seq` is dropped), so callers see one format.

Every failure of the underlying readers (truncated or corrupt files, unknown storage) becomes a
`BagError` whose message names the bag and, where known, the topic being read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BagError(RuntimeError):
    """A bag cannot be read or written; the message says which bag (and topic) and why."""


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    timestamp_ns: int  # receive time recorded in the bag
    data: bytes  # CDR (ROS 2 serialisation)


@dataclass(frozen=True)
class TopicInfo:
    msgtype: str
    count: int


def _reader_errors() -> tuple[type[BaseException], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError

    # struct/zlib/lz4 failures surface as these when a file is cut mid-record.
    return (AnyReaderError, Reader1Error, Reader2Error, SerdeError, EOFError, OSError, ValueError, KeyError,
            IndexError, AssertionError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())  # one line


class BagReader:
    """An open bag (any format `rosbags` reads): its topics and its messages as ROS 2 CDR."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: Any = None
        self._to_cdr: Any = None  # ROS 1 only: typestore whose ros1_to_cdr drops the header's seq
        self.topics: dict[str, TopicInfo] = {}

    def __enter__(self) -> BagReader:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        try:
            self._reader = AnyReader([self.path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self._reader.open()
        except _reader_errors() as exc:
            raise BagError(f"cannot open bag {self.path} (truncated or not a bag?): {_describe(exc)}") from exc
        counts: dict[str, list] = {}
        for connection in self._reader.connections:
            entry = counts.setdefault(connection.topic, [connection.msgtype, 0])
            entry[1] += connection.msgcount
        self.topics = {topic: TopicInfo(msgtype, count) for topic, (msgtype, count) in sorted(counts.items())}
        if not self._reader.is2:
            # The bag's own (ROS 1) definitions with ROS 2's Header, as rosbags' own converter does:
            # ros1_to_cdr then skips `seq` once, and the result is the ROS 2 wire format.
            store = get_typestore(Stores.EMPTY)
            store.register({**self._reader.typestore.fielddefs,
                            "std_msgs/msg/Header": get_typestore(Stores.ROS2_HUMBLE).fielddefs["std_msgs/msg/Header"]})
            self._to_cdr = store
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def is_ros1(self) -> bool:
        return self._to_cdr is not None

    @property
    def typestore(self) -> Any:
        """The message definitions of this bag's types (for writing them elsewhere)."""
        return self._to_cdr if self._to_cdr is not None else self._reader.typestore

    def require(self, topics: list[str]) -> None:
        missing = [t for t in topics if t not in self.topics]
        if missing:
            raise BagError(f"bag {self.path} has no topic {', '.join(missing)} "
                           f"(it has: {', '.join(self.topics) or 'none'})")

    def messages(self, topics: list[str] | None = None) -> Iterator[RawMessage]:
        """Every message of ``topics`` (all when None) in bag order, as ROS 2 CDR bytes."""
        if topics is not None:
            self.require(topics)
        connections = [c for c in self._reader.connections if topics is None or c.topic in topics]
        if not connections:  # rosbags reads every topic when given none
            return
        last = "its first message"
        iterator = self._reader.messages(connections=connections)
        while True:
            try:
                connection, timestamp, rawdata = next(iterator)
            except StopIteration:
                return
            except _reader_errors() as exc:
                raise BagError(f"bag {self.path} is truncated or corrupt after {last}: {_describe(exc)}") from exc
            data = rawdata
            if self._to_cdr is not None:
                try:
                    data = self._to_cdr.ros1_to_cdr(rawdata, connection.msgtype)
                except _reader_errors() as exc:
                    raise BagError(f"bag {self.path}: cannot convert the ROS 1 {connection.msgtype} on "
                                   f"{connection.topic} at t={timestamp} ns: {_describe(exc)}") from exc
            last = f"{connection.topic} at t={timestamp} ns"
            yield RawMessage(connection.topic, connection.msgtype, timestamp, bytes(data))


def read_raw(path: str | Path, topics: list[str] | None = None) -> Iterator[RawMessage]:
    """Every message of ``topics`` (all when None) in bag order, as ROS 2 CDR bytes.

    ROS 1 bags are converted to CDR on the fly, so callers see one format.
    """
    with BagReader(path) as reader:
        yield from reader.messages(topics)


class BagWriter:
    """A rosbag2 (MCAP by default) being written from raw CDR messages."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def knows(self, msgtype: str) -> bool:
        return msgtype in self._typestore.fielddefs

    def add_types_from(self, typestore: Any, msgtype: str) -> None:
        """Make a type this writer's ROS 2 store lacks (e.g. realsense_msgs) known, from a source bag's store."""
        from rosbags.typesys import get_types_from_msg

        if self.knows(msgtype):
            return
        types = get_types_from_msg(typestore.generate_msgdef(msgtype, ros_version=2)[0], msgtype)
        types.pop("std_msgs/msg/Header", None)  # keep ROS 2's
        self._typestore.register(types)

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, timestamp_ns, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1


def message_class(msgtype: str) -> type:
    """The rclpy message class of 'pkg/msg/Name'; BagError when its package is not installed."""
    import importlib

    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BagError(f"message type {msgtype} is not installed (no Python package '{package}')") from exc
