"""The multi-camera rules (depth_ros.ros.cameras): the `cameras` list, per-camera overrides, fair frame slots."""

from __future__ import annotations

import threading
import time

import pytest

from depth_ros.ros.cameras import (
    PER_CAMERA,
    SHARED_ONLY,
    CamerasError,
    FrameSlots,
    camera_values,
    check_override,
    parse_cameras,
    split_override,
    validate_cameras,
)
from depth_ros.ros.parameters import PARAMETERS


def shared() -> dict:
    return {spec.name: spec.default for spec in PARAMETERS}


def test_cameras_from_a_list_or_a_launch_string() -> None:
    assert parse_cameras(["front", "rear"]) == ("front", "rear")
    assert parse_cameras("front, rear") == ("front", "rear") == parse_cameras("front,rear")
    assert parse_cameras("") == () == parse_cameras([])
    for bad, message in ((["a", "a"], "twice"), (["front/left"], "ROS name token"), (["1cam"], "ROS name token"),
                         (["model"], "parameter's name"), ([1, 2], "list of names")):
        with pytest.raises(CamerasError, match=message):
            parse_cameras(bad)


def test_overrides_per_camera_and_shared_only_parameters() -> None:
    assert "cloud_stride" in PER_CAMERA and "input_rectified" in PER_CAMERA and "navigation_outputs" in PER_CAMERA
    assert "model" not in PER_CAMERA and set(PER_CAMERA).isdisjoint(SHARED_ONLY)
    assert split_override("front.cloud_stride", ["front"]) == ("front", "cloud_stride")
    assert split_override("front.model", ["front"]) is None  # one model for every camera
    assert split_override("side.cloud_stride", ["front"]) is None
    # ROS types `true` as a bool: it becomes input_rectified's string form, like the shared parameter.
    assert check_override("front", "input_rectified", True) == ("true", None)
    value, reason = check_override("rear", "cloud_stride", 0)
    assert reason is not None and "rear.cloud_stride" in reason
    values = camera_values(shared(), {"cloud_stride": 2})
    assert values["cloud_stride"] == 2 and values["model"] == shared()["model"]
    assert validate_cameras(shared(), {"front": {}, "rear": {"min_depth": 60.0}}).startswith("camera 'rear'")
    assert validate_cameras(shared(), {"front": {}, "rear": {"cloud_stride": 4}}) is None


def test_slots_keep_the_newest_frame_per_camera_and_take_all_round_robin() -> None:
    slots = FrameSlots(("a", "b", "c"))
    assert slots.put("a", 1) is False and slots.put("a", 2) is True  # the older one was replaced
    slots.put("c", 3)
    assert slots.take_all(0.1) == [("a", 2), ("c", 3)]
    assert slots.take_all(0.01) == []
    for name in "abc":
        slots.put(name, name)
    # Last round started with a: this one starts after it, so no camera is always served first.
    assert [name for name, _ in slots.take_all(0.1)] == ["b", "c", "a"]
    for name in "abc":
        slots.put(name, name)
    assert [name for name, _ in slots.take_all(0.1)] == ["c", "a", "b"]
    slots.put("b", 1)
    assert slots.clear() == ["b"] and slots.take_all(0.01) == []


def test_window_waits_for_the_other_active_cameras_only() -> None:
    slots = FrameSlots(("a", "b"), window=0.3, active_within=60.0)
    slots.put("a", 1)
    assert slots.take_all(0.1) == [("a", 1)]  # b never sent: nothing to wait for
    slots.put("b", 1)
    t0 = time.monotonic()
    assert slots.take_all(0.1) == [("b", 1)]  # a is active: the round waited the window for it, then went on
    assert time.monotonic() - t0 >= 0.29
    # Both active: a round with a's frame waits for b's (it arrives from another thread) and takes both.
    slots.put("a", 2)
    threading.Timer(0.05, lambda: slots.put("b", 2)).start()
    assert slots.take_all(0.1) == [("a", 2), ("b", 2)]
    # A camera silent for longer than active_within is not waited for, however long the window.
    slots.window, slots.active_within = 30.0, 0.0
    slots.put("a", 3)
    t0 = time.monotonic()
    assert slots.take_all(0.1) == [("a", 3)]
    assert time.monotonic() - t0 < 15.0
