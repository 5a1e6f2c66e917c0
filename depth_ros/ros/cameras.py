"""Several cameras in one depth_node: the `cameras` parameter, per-camera overrides, fair frame slots.

One node serves every camera of a robot with one model (one backend, one engine, one set of runtime threads).
Camera ``front`` reads ``front/image`` (or ``front/image/compressed``), ``front/camera_info`` and
``front/reference_*`` and publishes ``front/depth``, ``front/depth/camera_info``, ``front/points``, ... relative
to the node's namespace, so namespaces and remapping work as for one camera. With ``cameras`` empty the node
is today's single camera with today's topic names.

Parameters are shared by every camera unless a camera overrides one: ``front.cloud_stride: 2``. What belongs
to the model or the process (the model, backend, threads, QoS, diagnostics period) is shared only.

No rclpy here: the node does the wiring, this module the rules (tested on their own).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from depth_ros.ros.parameters import PARAMETERS, SPECS, check_value, normalise, validate

MAX_CAMERAS = 16
# Parameters of the model, its runtime and the process: the same for every camera.
SHARED_ONLY = frozenset({
    "model", "backend", "device", "num_threads", "engine_cache_dir", "engine_precision", "backend_check",
    "backend_check_tolerance", "backend_check_max_error", "autostart", "diagnostics_period",
    "input_qos_reliability", "input_qos_depth", "output_qos_reliability", "output_qos_depth", "batch_window",
})
PER_CAMERA = tuple(spec.name for spec in PARAMETERS if spec.name not in SHARED_ONLY)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class CamerasError(ValueError):
    """A bad `cameras` list or per-camera override; the message says how to fix it."""


def parse_cameras(value: Any) -> tuple[str, ...]:
    """The `cameras` parameter as ROS delivers it (a string list, or one string "front,rear" as a launch
    argument gives it; "" or [] = one camera, no prefix) -> the camera names, validated."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        names = [part.strip() for part in re.split(r"[,\s]+", value) if part.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value if v.strip()]
    else:
        raise CamerasError(f"parameter 'cameras' must be a list of names (e.g. [front, rear]) or 'front,rear', "
                           f"got {value!r}")
    for name in names:
        if not _NAME.match(name):
            raise CamerasError(f"camera name {name!r} in 'cameras' is not a ROS name token: use letters, digits "
                               "and _, starting with a letter (it becomes the topic prefix {name}/image)")
        if name in SPECS:
            raise CamerasError(f"camera name {name!r} is also a parameter's name: choose another")
    if len(set(names)) != len(names):
        raise CamerasError(f"parameter 'cameras' names a camera twice: {names}")
    if len(names) > MAX_CAMERAS:
        raise CamerasError(f"parameter 'cameras' lists {len(names)} cameras; at most {MAX_CAMERAS}")
    return tuple(names)


def override_name(camera: str, parameter: str) -> str:
    return f"{camera}.{parameter}"


def split_override(name: str, cameras: Iterable[str]) -> tuple[str, str] | None:
    """'front.cloud_stride' -> ('front', 'cloud_stride') when front is a camera and the parameter is per camera."""
    camera, _, parameter = name.partition(".")
    if camera in cameras and parameter in PER_CAMERA:
        return camera, parameter
    return None


def check_override(camera: str, parameter: str, value: Any) -> tuple[Any, str | None]:
    """(the value in its parameter's type, None) or (value, the reason it is refused)."""
    spec = SPECS[parameter]
    value = normalise(spec, value)
    reason = check_value(spec, value)
    if reason is not None:
        reason = reason.replace(f"parameter '{parameter}'", f"parameter '{override_name(camera, parameter)}'")
    return value, reason


def camera_values(shared: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """One camera's parameter values: the shared ones with its overrides on top."""
    return {**shared, **overrides}


def validate_cameras(shared: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> str | None:
    """None when every camera's values are consistent (validate() on each), else the first reason, naming it."""
    for camera, own in overrides.items():
        reason = validate(camera_values(shared, own))
        if reason is not None:
            return f"camera '{camera}': {reason}" if own else reason
    return None


@dataclass
class FrameSlots:
    """The newest frame per camera (a newer one replaces it: counted as superseded by the caller) and a fair
    order to take them in: every waiting camera is taken in one round, starting after the camera served first
    last time, so no camera starves another however fast it publishes."""

    cameras: tuple[str, ...]
    # Seconds a round waits, once it has a frame, for the other active cameras' frames (0 = take what is
    # there): cameras triggered together then share one forward pass. Only worth it when the model batches.
    window: float = 0.0
    active_within: float = 1.0  # a camera is active when its last frame is at most this old (seconds)
    clock: Any = time.monotonic
    _pending: dict[str, Any] = field(default_factory=dict)
    _last_put: dict[str, float] = field(default_factory=dict)
    _start: int = 0
    _cv: threading.Condition = field(default_factory=threading.Condition)

    def put(self, camera: str, item: Any) -> bool:
        """Store the newest frame of ``camera``; True when it replaced one never taken."""
        with self._cv:
            replaced = camera in self._pending
            self._pending[camera] = item
            self._last_put[camera] = self.clock()
            self._cv.notify_all()
        return replaced

    def _waiting_for(self) -> bool:
        now = self.clock()
        return any(now - seen <= self.active_within and camera not in self._pending
                   for camera, seen in self._last_put.items())

    def take_all(self, timeout: float, running: Any = lambda: True) -> list[tuple[str, Any]]:
        """Every waiting frame, in round-robin order (waits up to ``timeout`` s for one, then up to ``window`` s
        for the other active cameras' frames); [] when none."""
        with self._cv:
            if not self._pending and running():
                self._cv.wait(timeout)
            if not self._pending:
                return []
            if self.window > 0:
                deadline = self.clock() + self.window
                while self._waiting_for() and running() and (left := deadline - self.clock()) > 0:
                    self._cv.wait(left)
            count = len(self.cameras)
            order = [self.cameras[(self._start + i) % count] for i in range(count)]
            taken = [(camera, self._pending.pop(camera)) for camera in order if camera in self._pending]
            self._start = (self.cameras.index(taken[0][0]) + 1) % count
            return taken

    def clear(self) -> list[str]:
        """Forget every waiting frame; returns the cameras whose frame was never taken."""
        with self._cv:
            cameras = list(self._pending)
            self._pending.clear()
            self._cv.notify_all()
            return cameras

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()
