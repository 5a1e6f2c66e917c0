"""DDS settings for processes the project starts (demo, tests, benchmarks).

Keeps discovery and traffic on this machine and applies the shipped Fast DDS profile that lets
multi-megabyte best-effort messages arrive (see config/fastdds_large_data.xml and the README).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from depth_ros.resources import package_file

PROFILE = "config/fastdds_large_data.xml"


def profile_path() -> Path:
    found = package_file(PROFILE)
    if found is None:
        raise FileNotFoundError(f"{PROFILE} is not installed with depth_ros")
    return found


def localhost_profile() -> Path:
    """The shipped profile with its UDP transport bound to 127.0.0.1 (a temporary copy)."""
    text = profile_path().read_text()
    marker = "<receiveBufferSize>4194304</receiveBufferSize>"
    if marker not in text:
        raise ValueError(f"{PROFILE} changed: cannot find {marker}")
    allow = "\n        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>"
    text = text.replace(marker, marker + allow)
    # Reliable writers announce what they sent every 3 s by default, and a reader acknowledges on that
    # heartbeat: waiting for acknowledgements (the tests' harness, bag play) would wait up to 3 s per message.
    writer = ("    <data_writer profile_name=\"depth_ros_local_writer\" is_default_profile=\"true\">\n"
              "      <times><heartbeat_period><sec>0</sec><nanosec>20000000</nanosec></heartbeat_period></times>\n"
              "    </data_writer>\n  </profiles>")
    if "</profiles>" not in text:
        raise ValueError(f"{PROFILE} changed: cannot find </profiles>")
    text = text.replace("</profiles>", writer, 1)
    handle, name = tempfile.mkstemp(prefix="depth_ros_fastdds_", suffix=".xml")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return Path(name)


def local_ros_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ROS process whose DDS traffic stays on this machine."""
    env = dict(os.environ if base is None else base)
    env.update({
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",
        "ROS_DOMAIN_ID": str(domain_id),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(localhost_profile()),
    })
    return env


def apply_local_ros_env(domain_id: int) -> None:
    """Set `local_ros_env` in this process (before rclpy.init)."""
    os.environ.update(local_ros_env(domain_id, base={}))


# ROS 2 recommends domain ids 0..101 on Linux (higher ones collide with ephemeral ports); 0 is the
# default every real robot on the network uses, so the project's own processes never take it.
DOMAIN_RANGE = range(1, 102)
_LOCK_DIR = Path(tempfile.gettempdir()) / "depth_ros_domains"
_held: dict[int, IO[str]] = {}


def reserve_domain_id(exclude: tuple[int, ...] = ()) -> int:
    """A ROS_DOMAIN_ID no other depth_ros process on this machine holds, kept until this process exits.

    Each id is an exclusive flock on a file in the temp directory: concurrent test runs, demos and
    benchmarks each get their own domain, and a crashed process frees its id (the kernel drops the lock).
    """
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for domain_id in DOMAIN_RANGE:
        if domain_id in _held or domain_id in exclude:
            continue
        handle = open(_LOCK_DIR / f"{domain_id}.lock", "a")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held[domain_id] = handle
        return domain_id
    raise RuntimeError(f"every ROS domain id in {DOMAIN_RANGE.start}..{DOMAIN_RANGE.stop - 1} is held by another "
                       f"depth_ros process on this machine (locks in {_LOCK_DIR})")


def release_domain_id(domain_id: int) -> None:
    """Give back an id from `reserve_domain_id` before the process exits."""
    handle = _held.pop(domain_id, None)
    if handle is not None:
        handle.close()
