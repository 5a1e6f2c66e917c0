"""Reading and writing bags (rosbag1, rosbag2 sqlite3/MCAP) with the `rosbags` library.

Messages travel as raw CDR bytes: rclpy's (de)serialize_message turns them into live messages,
so no per-type conversion code exists or is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    timestamp_ns: int  # receive time recorded in the bag
    data: bytes  # CDR (ROS 2 serialisation)


def read_raw(path: str | Path, topics: list[str] | None = None) -> Iterator[RawMessage]:
    """Every message of ``topics`` (all when None) in bag order, as ROS 2 CDR bytes.

    ROS 1 bags are converted to CDR on the fly, so callers see one format.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    with AnyReader([Path(path)], default_typestore=typestore) as reader:
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        missing = sorted(set(topics or ()) - {c.topic for c in reader.connections})
        if missing:
            available = ", ".join(sorted({c.topic for c in reader.connections}))
            raise KeyError(f"bag {path} has no topic {', '.join(missing)} (it has: {available})")
        for connection, timestamp, rawdata in reader.messages(connections=connections):
            data = rawdata
            if reader.is2 is False:  # ROS 1 bag: re-serialise as CDR
                msg = reader.deserialize(rawdata, connection.msgtype)
                data = bytes(reader.typestore.serialize_cdr(msg, connection.msgtype))
            yield RawMessage(connection.topic, connection.msgtype, timestamp, bytes(data))


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

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = connection
        self._writer.write(connection, timestamp_ns, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1
