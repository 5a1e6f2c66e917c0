"""DDS settings for processes the project starts (demo, tests, benchmarks).

Keeps discovery and traffic on this machine and applies the shipped Fast DDS profile that lets
multi-megabyte best-effort messages arrive (see config/fastdds_large_data.xml and the README).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from depth_ros.models import package_file

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
