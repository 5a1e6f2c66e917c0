"""depth_node: camera image + CameraInfo -> metric depth, its CameraInfo, a PointCloud2 and a colour view.

Wiring only: parameters, lifecycle, subscriptions, publishers, diagnostics. The per-frame work is
`depth_ros.ros.frame_processor.FrameProcessor` (shared with `depth-ros bag process`).

Lifecycle (managed node, REP-less but the ROS 2 standard state machine, as Nav2 drives it):
unconfigured --configure (load + check the model, create publishers)--> inactive --activate (subscribe,
start the worker)--> active; deactivate / cleanup (free the backend) / shutdown go back. With
`autostart: true` (default) the node configures and activates itself, so `ros2 run` works unmanaged.

Threading: subscription callbacks only store the newest image per camera (the newest frame wins; a frame
replaced before the worker took it is counted as dropped); one worker thread decodes and runs inference, one
publisher thread builds and publishes the messages of the round before (so a large cloud's packing and
serialisation overlap the next frame's inference), and the executor (CameraInfo, parameters, lifecycle
services, diagnostics) never waits for either. Parameter changes swap the settings the next frame reads; they
never wait for a frame.

Several cameras (parameter `cameras`, depth_ros.ros.cameras): one model serves them all. Each round the
worker takes every waiting camera's newest frame (round-robin, so none starves another), runs frames of the
same network input size in one forward pass (batched where the backend allows it) and publishes each
camera's outputs on its own topics; counters and diagnostics are per camera.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

try:  # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore[no-redef]

from depth_ros.backends import ModelLoadError
from depth_ros.backends.check import BackendChecker, BackendCheckError
from depth_ros.core.camera import CameraInfoError
from depth_ros.core.contract import ContractError
from depth_ros.core.scale_recovery import (
    NoScaleFit,
    ReferenceInputError,
    ScaleRecoverer,
)
from depth_ros.pipeline import DepthEstimator, DepthFrame
from depth_ros.resources import package_file, resolve_model_path
from depth_ros.ros.cameras import (
    PER_CAMERA,
    CamerasError,
    FrameSlots,
    camera_values,
    check_override,
    override_name,
    parse_cameras,
    split_override,
    validate_cameras,
)
from depth_ros.ros.dds import PROFILE as LARGE_DATA_PROFILE
from depth_ros.ros.diagnostics import PipelineStats, Throttle
from depth_ros.ros.frame_processor import (
    CAMERA_INFO,
    COLORED,
    CONFIDENCE,
    DEPTH,
    POINTS,
    FrameProcessor,
    FrameSkipped,
    Wanted,
    describe_input_rule,
)
from depth_ros.ros.memory import tune_malloc_for_large_messages
from depth_ros.ros.navigation_msgs import NavigationOutputs
from depth_ros.ros.navigation_msgs import create_publishers as create_navigation_publishers
from depth_ros.ros.parameters import (
    PARAMETERS,
    REMOVED_PARAMETERS,
    SPECS,
    ParamSpec,
    accepts_bool,
    backend_options,
    normalise,
    recovery_settings,
    validate,
)
from depth_ros.ros.qos_events import incompatible_qos_message
from depth_ros.ros.references import reference_from_cloud_msg, reference_from_image_msg

UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = "unconfigured", "inactive", "active", "finalized"
# Startup parameters that only take effect at configure/activate: changeable while unconfigured (so a
# lifecycle manager's user can fix a bad model and configure again), refused otherwise.
_FIXED_AT_STARTUP = ("autostart",)


class ConfigurationError(RuntimeError):
    """Bad configuration: the node cannot start; the message says how to fix it."""


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description,
                                     read_only=spec.name in _FIXED_AT_STARTUP)
    if spec.read_only and spec.name not in _FIXED_AT_STARTUP:
        descriptor.description += " (set at startup, or while the node is unconfigured)"
    if spec.choices is not None:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=spec.range[0], to_value=spec.range[1])]
        descriptor.dynamic_typing = True  # accept integers written in YAML (max_depth: 20); validated below
    elif spec.range is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    if accepts_bool(spec):
        # ROS types `-p input_rectified:=true` as a bool and `"true"` as a string: take both (validated below).
        descriptor.dynamic_typing = True
    return descriptor


def _seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _publish(publishers: dict[str, Any], kind: str, msg: Any) -> None:
    publishers[kind].publish(msg)


@dataclass
class CameraChannel:
    """One camera the node serves: its topics (``prefix``), parameter values, per-frame state, publishers,
    subscriptions and counters. The model is the node's, shared by every channel."""

    name: str  # "" = the single camera of a node without `cameras`
    overrides: dict[str, Any]  # its own parameter values (<camera>.<parameter>)
    values: dict[str, Any]  # the shared values with its overrides on top
    stats: PipelineStats
    processor: FrameProcessor | None = None
    scale: ScaleRecoverer | None = None
    navigation: NavigationOutputs | None = None
    publishers: dict[str, Any] = field(default_factory=dict)
    in_flight: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.name}/" if self.name else ""

    def topic(self, relative: str) -> str:
        return self.prefix + relative


class DepthNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_node", **kwargs)
        self._throttle = Throttle(5.0)
        use_sim_time = bool(self.get_parameter("use_sim_time").value)
        # Rates follow the node's clock under use_sim_time (a paused or looped bag), wall time otherwise.
        self._clock_seconds: Callable[[], float] = (
            (lambda: self.get_clock().now().nanoseconds * 1e-9) if use_sim_time else time.monotonic)
        self._values = self._declare_parameters()
        self._channels = self._declare_cameras()  # by camera name, in the `cameras` order
        reason = validate_cameras(self._values, {name: ch.overrides for name, ch in self._channels.items()})
        if reason is not None:
            raise ConfigurationError(f"{reason}. Fix it in the params file or with -p NAME:=VALUE")
        self.state = UNCONFIGURED
        self.configure_error = ""  # why the last configure failed (also logged)
        self.qos_events: Counter[str] = Counter()
        self._last_qos_problem = ""
        self._estimator: DepthEstimator | None = None
        self._checker: BackendChecker | None = None
        self._backend_fallback = ""
        self._pub_diag: Any = None
        self._diag_timer: Any = None
        self._subscriptions_active: list[Any] = []
        self._slots = FrameSlots(tuple(ch.name for ch in self._channels.values()))
        self._running = False
        self._worker: threading.Thread | None = None
        # Estimated rounds waiting to be published (one at most: the worker estimates the next round while the
        # publisher thread builds and publishes this one's messages; a full queue holds the worker back).
        self._finishing: queue.Queue[list[Any] | None] = queue.Queue(maxsize=1)
        self._publisher_thread: threading.Thread | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._warn_without_large_data_profile()
        for ch in self._channels.values():
            self.get_logger().info(describe_input_rule(ch.values["input_rectified"], self._image_base_topic(ch)))

    def _warn_without_large_data_profile(self) -> None:
        rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
        if rmw.startswith("rmw_fastrtps") and not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
            profile = package_file(LARGE_DATA_PROFILE)
            self.get_logger().warning(
                "FASTDDS_DEFAULT_PROFILES_FILE is not set: with Fast DDS's default transports, best-effort "
                "depth images and clouds (megabytes) mostly never reach other processes. Use the launch file, "
                f"or export FASTDDS_DEFAULT_PROFILES_FILE={profile or LARGE_DATA_PROFILE} (README, 'Large messages')"
            )

    # ----------------------------------------------------------------- parameters
    def _declare_parameters(self) -> dict[str, Any]:
        for name, replacement in REMOVED_PARAMETERS.items():
            # Declared only to notice an old params file or command line, then undeclared again.
            given = self.declare_parameter(name, None, ParameterDescriptor(dynamic_typing=True)).value
            self.undeclare_parameter(name)
            if given is not None:
                raise ConfigurationError(f"parameter '{name}' was removed: {replacement}")
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                param = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except Exception as exc:  # rclpy raises per-type exceptions for bad overrides
                raise ConfigurationError(
                    f"parameter '{spec.name}': {exc}. Fix it in the params file or with -p {spec.name}:=VALUE"
                ) from exc
            values[spec.name] = normalise(spec, param.value)
        return values

    def _declare_cameras(self) -> dict[str, CameraChannel]:
        """The `cameras` list (fixed at startup) and each camera's overrides, declared as <camera>.<parameter>."""
        # A string list, or one string (a launch argument 'front,rear'): dynamic typing takes either; an empty list
        # would otherwise be typed as a byte array by rclpy.
        descriptor = ParameterDescriptor(
            name="cameras", dynamic_typing=True, read_only=True,
            description="camera names served by this one node (string list, or 'front,rear'); camera 'front' reads "
                        "front/image and front/camera_info and publishes front/depth, front/points, ...; empty = one "
                        "camera on image, camera_info, depth, ... Per camera: <camera>.<parameter> overrides")
        try:
            names = parse_cameras(self.declare_parameter("cameras", "", descriptor).value)
        except CamerasError as exc:
            raise ConfigurationError(f"{exc}. Fix it in the params file or with -p cameras:=[front,rear]") from exc
        channels = []
        for name in names or ("",):
            overrides: dict[str, Any] = {}
            for parameter in PER_CAMERA if name else ():
                full = override_name(name, parameter)
                spec = SPECS[parameter]
                described = ParameterDescriptor(name=full, dynamic_typing=True, read_only=False,
                                                description=f"camera '{name}': {spec.description} (unset = the "
                                                            f"shared '{parameter}')")
                given = self.declare_parameter(full, None, described).value
                if given is None:
                    continue
                value, reason = check_override(name, parameter, given)
                if reason is not None:
                    raise ConfigurationError(f"{reason}. Fix it in the params file or with -p {full}:=VALUE")
                overrides[parameter] = value
            channels.append(CameraChannel(name, overrides, camera_values(self._values, overrides),
                                          PipelineStats(clock=self._clock_seconds)))
        return {ch.name: ch for ch in channels}

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        proposed = dict(self._values)
        overrides = {name: dict(ch.overrides) for name, ch in self._channels.items()}
        names = [ch.name for ch in self._channels.values() if ch.name]
        for param in params:
            target = split_override(param.name, names)
            if target is not None:
                camera, name = target
                spec = SPECS[name]
                current = overrides[camera].get(name, proposed[name])
                if param.value is None:  # unset: the shared value again
                    value = proposed[name]
                    overrides[camera].pop(name, None)
                else:
                    value, reason = check_override(camera, name, param.value)
                    if reason is not None:
                        return SetParametersResult(successful=False, reason=reason)
                    overrides[camera][name] = value
            else:
                spec = SPECS.get(param.name)
                if spec is None:
                    continue
                value = normalise(spec, param.value)
                current = self._values[spec.name]
                proposed[spec.name] = value
            if spec.read_only and value != current and self.state != UNCONFIGURED:
                return SetParametersResult(successful=False, reason=(
                    f"'{param.name}' takes effect at configure: deactivate and clean up the node "
                    f"(ros2 lifecycle set {self.get_fully_qualified_name()} cleanup), set it, then configure"))
        reason = validate(proposed) or validate_cameras(proposed, overrides)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        self._values = proposed
        self._apply_batch_window()
        # Never blocks: the frame in flight keeps its settings, the next one takes these.
        for ch in self._channels.values():
            ch.overrides = overrides[ch.name]
            ch.values = camera_values(proposed, ch.overrides)
            if ch.processor is not None:
                ch.processor.configure(ch.values)
            if ch.scale is not None:
                ch.scale.settings = recovery_settings(ch.values)
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------- QoS
    def _qos(self, side: str) -> QoSProfile:
        reliable = self._values[f"{side}_qos_reliability"] == "reliable"
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._values[f"{side}_qos_depth"],
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)

    def _on_incompatible_qos(self, topic: str, role: str, qos: QoSProfile, event: Any) -> None:
        message = incompatible_qos_message(topic, role, qos, event.last_policy_kind)
        self.qos_events[topic] += 1
        self._last_qos_problem = message
        allowed, held = self._throttle.allow(f"qos:{topic}")
        if allowed:
            suffix = f" ({held} more like this since the last report)" if held else ""
            self.get_logger().warning(message + suffix)

    def _publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> Any:
        callbacks = PublisherEventCallbacks(
            incompatible_qos=partial(self._on_incompatible_qos, self.resolve_topic_name(topic), "publisher", qos))
        return self.create_lifecycle_publisher(msg_type, topic, qos, event_callbacks=callbacks)

    def _subscribe(self, msg_type: type, topic: str, callback: Callable[[Any], None]) -> None:
        qos = self._qos("input")
        callbacks = SubscriptionEventCallbacks(
            incompatible_qos=partial(self._on_incompatible_qos, self.resolve_topic_name(topic), "subscription", qos))
        self._subscriptions_active.append(
            self.create_subscription(msg_type, topic, callback, qos, event_callbacks=callbacks))

    def _image_base_topic(self, ch: CameraChannel) -> str:
        return self.resolve_topic_name(ch.topic("image"))

    # ----------------------------------------------------------------- lifecycle
    def autostart(self) -> None:
        """configure + activate (parameter autostart); ConfigurationError when configuring fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise ConfigurationError(self.configure_error or "configure failed (see the log)")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise ConfigurationError("activate failed (see the log)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.configure_error = ""
        try:
            self._configure()
        except ConfigurationError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # a bug, not a setting: say what it was (rclpy's on_error would not)
            self.configure_error = f"unexpected {type(exc).__name__}: {exc} (a bug: please report it)"
            self.get_logger().error(f"configure failed: {self.configure_error}\n{traceback.format_exc()}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.state = INACTIVE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        model_path = resolve_model_path(self._values["model"])
        self._backend_fallback = ""
        try:  # one model for every camera: one backend, one engine, one set of runtime threads
            estimator = DepthEstimator.from_path(model_path, self._values["backend"], backend_options(self._values),
                                                 warn=self._on_backend_fallback)
            self._checker = self._backend_checker(estimator, model_path)
        except (ModelLoadError, ContractError) as exc:
            raise ConfigurationError(str(exc)) from exc
        self._model_path = model_path
        self._estimator = estimator
        qos = self._qos("output")
        for ch in self._channels.values():
            ch.processor = FrameProcessor(estimator, ch.values, image_topic=self._image_base_topic(ch))
            ch.processor.on_frame = partial(self._on_frame, ch)
            ch.scale = None
            if ch.values["scale_source"] != "fixed":
                ch.scale = ScaleRecoverer(ch.values["scale_source"], recovery_settings(ch.values))
            ch.publishers = {kind: self._publisher(msg_type, ch.topic(kind), qos) for kind, msg_type in
                             ((DEPTH, Image), (CAMERA_INFO, CameraInfo), (COLORED, Image),
                              (CONFIDENCE, Image), (POINTS, PointCloud2))}
            ch.navigation = None
            if ch.values["navigation_outputs"]:  # 'scan' and 'points_filtered' (README "Navigation (Nav2)")
                prefixed = partial(self._prefixed_publisher, ch.prefix)
                navigation_publishers = create_navigation_publishers(prefixed, qos)
                ch.publishers.update(navigation_publishers)
                ch.navigation = NavigationOutputs(navigation_publishers, warn=self.get_logger().warning)
                ch.processor.extra_outputs = ch.navigation
        self._apply_batch_window()
        self._pub_diag = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        # Wall (steady) time: under use_sim_time a paused bag stops the clock and a looped one sends it back, and a
        # sim-time timer would then stop publishing diagnostics; the values themselves follow the node's clock.
        self._diag_timer = self.create_timer(self._values["diagnostics_period"], self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        contract = estimator.contract
        cameras = f", serving {len(self._channels)} cameras: {', '.join(self._slots.cameras)}" \
            if "" not in self._channels else ""
        self.get_logger().info(
            f"configured: model '{contract.name}' ({model_path}, output {contract.output_kind}, input "
            f"{contract.input.width}x{contract.input.height} {contract.input.resize}) on "
            f"{estimator.backend.name}/{estimator.backend.device}, batches of up to {estimator.max_batch}{cameras}"
        )

    def _apply_batch_window(self) -> None:
        """Wait for the other cameras only where it can pay: several cameras and a model that batches."""
        batches = self._estimator is not None and self._estimator.max_batch > 1
        self._slots.window = self._values["batch_window"] if batches and len(self._channels) > 1 else 0.0

    def _prefixed_publisher(self, prefix: str, msg_type: type, topic: str, qos: QoSProfile) -> Any:
        return self._publisher(msg_type, prefix + topic, qos)

    def _on_frame(self, ch: CameraChannel, frame: DepthFrame) -> None:
        if ch.values.get("edge_filter"):
            ch.stats.edges_filtered(frame.edge_pixels / max(1, frame.depth.size))
        if ch.values.get("temporal_filter"):
            ch.stats.temporal_filtered(frame.temporal_reset)

    def _on_backend_fallback(self, message: str) -> None:
        self._backend_fallback = message
        self.get_logger().warning(message)

    def _backend_checker(self, estimator: DepthEstimator, model_path: Path) -> BackendChecker | None:
        """The startup correctness check (parameter backend_check): run now when the backend's input size is
        fixed, else on the first frame's network input size (a dynamic model's engine is built for it)."""
        backend = estimator.backend
        if backend.name == "onnxruntime":
            return None  # it is the reference
        logger = self.get_logger()
        checker = BackendChecker(backend, model_path, estimator.contract.input, self._values["backend_check"],
                                 self._values["backend_check_tolerance"], self._values["backend_check_max_error"],
                                 warn=logger.warning, info=logger.info)
        if checker.policy == "off":
            logger.warning(f"backend_check is off: backend {backend.name!r} is trusted without a comparison")
            return checker
        estimator.input_check = checker
        if backend.fixed_input_size is not None:
            checker(backend.fixed_input_size)  # a BackendCheckError fails configure
        return checker

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        described = []
        for ch in self._channels.values():
            assert ch.processor is not None
            self._subscribe(CameraInfo, ch.topic("camera_info"), partial(self._on_camera_info, ch))
            if ch.values["scale_source"] == "depth":
                self._subscribe(Image, ch.topic("reference_depth"), partial(self._on_reference, ch))
            elif ch.values["scale_source"] == "points":
                self._subscribe(PointCloud2, ch.topic("reference_points"), partial(self._on_reference, ch))
            if ch.values["image_transport"] == "compressed":
                # image_transport convention: <base image topic>/compressed, after remapping the base.
                topic = self._image_base_topic(ch) + "/compressed"
                self._subscribe(CompressedImage, topic, partial(self._on_image, ch))
            else:
                topic = self._image_base_topic(ch)
                self._subscribe(Image, ch.topic("image"), partial(self._on_image, ch))
            described.append(f"{topic} ({ch.values['image_transport']})")
        self._running = True
        self._publisher_thread = threading.Thread(target=self._publish_rounds, name="depth_publisher", daemon=True)
        self._publisher_thread.start()
        self._worker = threading.Thread(target=self._work, name="depth_worker", daemon=True)
        self._worker.start()
        self.state = ACTIVE
        result = super().on_activate(state)  # activates the lifecycle publishers
        self.get_logger().info(
            f"active: subscribed to {', '.join(described)} ({self._values['input_qos_reliability']}), "
            f"publishing {self._values['output_qos_reliability']}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        self.state = INACTIVE
        self.get_logger().info("inactive: unsubscribed, publishing nothing")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model and publishers released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_work()
        self._release()
        self.state = FINALIZED
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in a lifecycle transition from '{state.label}': releasing everything")
        self._stop_work()
        self._release()
        return TransitionCallbackReturn.SUCCESS  # -> unconfigured, can be configured again

    def _stop_work(self) -> None:
        """Unsubscribe and stop the worker (the frames in flight finish first); a frame never taken is counted."""
        for subscription in self._subscriptions_active:
            self.destroy_subscription(subscription)
        self._subscriptions_active = []
        self._running = False
        for name in self._slots.clear():
            self._channels[name].stats.frame_dropped("deactivated")
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        if self._publisher_thread is not None:  # after the worker: what it estimated is still published
            self._finishing.put(None)
            self._publisher_thread.join(timeout=30.0)
            self._publisher_thread = None

    def _release(self) -> None:
        """Back to unconfigured: publishers, timer and the backend (its memory) freed."""
        for ch in self._channels.values():
            for publisher in ch.publishers.values():
                self.destroy_lifecycle_publisher(publisher)
            ch.publishers = {}
            ch.navigation = None
            ch.processor = None
            ch.scale = None
        if self._pub_diag is not None:
            self.destroy_lifecycle_publisher(self._pub_diag)
            self._pub_diag = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._estimator = None
        self._checker = None
        gc.collect()  # the backend's session/engine goes now, not at some later collection
        self.state = UNCONFIGURED

    # ----------------------------------------------------------------- inputs
    def _problem(self, ch: CameraChannel, reason: str, message: str, level: str = "error") -> None:
        """Count a skipped frame of one camera and log it, throttled per camera and reason."""
        ch.stats.frame_skipped(reason, message)
        allowed, held = self._throttle.allow(f"{ch.name}:{reason}")
        if allowed:
            suffix = f" ({held} more like this since the last report)" if held else ""
            # One call site per severity: rclpy raises ValueError when one call site logs at two severities.
            if level == "warn":
                self.get_logger().warning(message + suffix)
            else:
                self.get_logger().error(message + suffix)

    def _on_camera_info(self, ch: CameraChannel, msg: CameraInfo) -> None:
        processor = ch.processor
        if processor is None:
            return
        try:
            processor.camera_info(msg)
        except CameraInfoError as exc:
            allowed, held = self._throttle.allow(f"{ch.name}:bad_camera_info")
            if allowed:
                topic = self.resolve_topic_name(ch.topic("camera_info"))
                self.get_logger().error(f"rejected CameraInfo on {topic}: {exc}")

    def _on_reference(self, ch: CameraChannel, msg: Image | PointCloud2) -> None:
        scale = ch.scale
        if scale is None:
            return
        stamp = _seconds(msg.header.stamp)
        topic = self.resolve_topic_name(ch.topic("reference_points" if isinstance(msg, PointCloud2)
                                                 else "reference_depth"))
        try:
            if stamp == 0.0:
                raise ReferenceInputError("its stamp is 0, so its age cannot be judged; stamp it with the capture time")
            if isinstance(msg, PointCloud2):
                reference = reference_from_cloud_msg(msg, stamp)
            else:
                reference = reference_from_image_msg(msg, stamp)
        except ReferenceInputError as exc:
            scale.reference_rejected("bad_input")
            allowed, held = self._throttle.allow(f"{ch.name}:bad_reference")
            if allowed:
                suffix = f" ({held} more like this since the last report)" if held else ""
                self.get_logger().error(f"rejected scale reference on {topic}: {exc}{suffix}")
            return
        scale.set_reference(reference)

    def _on_image(self, ch: CameraChannel, msg: Image | CompressedImage) -> None:
        ch.stats.frame_received()
        if self._slots.put(ch.name, (msg, time.perf_counter())):
            ch.stats.frame_dropped("superseded")

    # ----------------------------------------------------------------- work
    def _work(self) -> None:
        while self._running:
            taken = self._slots.take_all(0.5, lambda: self._running)
            if not taken:
                continue
            channels = [self._channels[name] for name, _ in taken]
            for ch in channels:
                ch.in_flight = True
            try:
                self._process([(ch, msg, received) for ch, (_, (msg, received)) in zip(channels, taken, strict=True)])
            except Exception as exc:  # never let one bad batch stop the node
                for ch in channels:
                    ch.in_flight = False
                    try:
                        self._problem(ch, "processing_error", f"frame failed: {type(exc).__name__}: {exc}")
                    except Exception:  # even reporting failed: still count it, keep the worker alive
                        ch.stats.frame_skipped("processing_error", f"frame failed: {type(exc).__name__}")

    def _process(self, frames: list[tuple[CameraChannel, Image | CompressedImage, float]]) -> None:
        """One round of the worker: every waiting camera's newest frame, decoded, estimated together (one forward
        pass per network input size, DepthEstimator.estimate_batch), then handed to the publisher thread."""
        estimator = self._estimator
        assert estimator is not None
        prepared = []
        for ch, msg, received in frames:
            processor, publishers = ch.processor, ch.publishers
            assert processor is not None
            want = {kind: publishers[kind].get_subscription_count() > 0
                    for kind in (DEPTH, CAMERA_INFO, POINTS, COLORED, CONFIDENCE)}
            want_navigation = ch.navigation is not None and ch.navigation.wanted()
            if not (any(want.values()) or want_navigation):
                ch.stats.frame_dropped("no_subscribers")
                ch.in_flight = False
                continue
            wanted = Wanted(depth=want[DEPTH], colored=want[COLORED], points=want[POINTS],
                            confidence=want[CONFIDENCE])
            if ch.scale is not None:
                ch.scale.begin_frame(_seconds(msg.header.stamp))
            try:
                prepared.append((ch, received, processor.prepare(msg, wanted, self.resolve_topic_name(
                    ch.topic("camera_info")), scale_hook=ch.scale)))
            except FrameSkipped as skipped:
                ch.in_flight = False
                self._problem(ch, skipped.reason, skipped.message, level=skipped.level)
        if not prepared:
            return
        results = estimator.estimate_batch([p.request for _, _, p in prepared], return_errors=True)
        # Building and publishing the messages (the cloud above all) overlaps the next round's inference.
        self._finishing.put([(*entry, result) for entry, result in zip(prepared, results, strict=True)])

    def _publish_rounds(self) -> None:
        """The publisher thread: each estimated round's messages, camera by camera, in the order estimated."""
        while (done := self._finishing.get()) is not None:
            for ch, received, frame_input, result in done:
                try:
                    self._publish_frame(ch, received, frame_input, result)
                except Exception as exc:  # one camera's output failing never costs the others theirs
                    self._problem(ch, "processing_error", f"frame failed: {type(exc).__name__}: {exc}")
                finally:
                    ch.in_flight = False

    def _publish_frame(self, ch: CameraChannel, received: float, frame_input: Any, result: Any) -> None:
        if isinstance(result, BackendCheckError):  # a dynamic model's first size failed: never publish it
            self._problem(ch, "backend_check_failed", str(result))
            return
        if isinstance(result, NoScaleFit):  # relative depth without a metric scale is never published
            self._problem(ch, "no_scale_fit", str(result), level="warn")
            return
        if isinstance(result, Exception):
            self._problem(ch, "processing_error", f"frame failed: {type(result).__name__}: {result}")
            return
        assert ch.processor is not None
        timings = ch.processor.finish(frame_input, result, partial(_publish, ch.publishers))
        timings["total"] = time.perf_counter() - received
        ch.stats.frame_published(timings)

    # ----------------------------------------------------------------- diagnostics
    @staticmethod
    def _input_model(ch: CameraChannel) -> str:
        """What the latest CameraInfo made of the input: rectified (P) or raw (K + D)."""
        processor = ch.processor
        camera = processor.cameras.latest() if processor is not None else None
        return camera.input_model if camera is not None else "unknown (no CameraInfo yet)"

    def _publish_diagnostics(self) -> None:
        estimator, publisher = self._estimator, self._pub_diag
        if self.state != ACTIVE or estimator is None or publisher is None:
            return
        array = DiagnosticArray(status=[self._camera_status(estimator, ch) for ch in self._channels.values()])
        array.header.stamp = self.get_clock().now().to_msg()
        publisher.publish(array)

    def _camera_status(self, estimator: DepthEstimator, ch: CameraChannel) -> DiagnosticStatus:
        """One DiagnosticStatus per camera: its counters and problems, with the shared model's facts."""
        contract = estimator.contract
        name = f"{self.get_fully_qualified_name()}: depth pipeline" + (f" ({ch.name})" if ch.name else "")
        status = DiagnosticStatus(name=name, hardware_id=contract.name)
        within = max(5.0, 2 * self._values["diagnostics_period"])
        problem = ch.stats.recent_problem(within_s=within)
        if problem is not None:
            status.level, status.message = DiagnosticStatus.WARN, problem
        elif self._last_qos_problem:
            status.level, status.message = DiagnosticStatus.WARN, self._last_qos_problem
        elif ch.stats.received == 0:
            status.level, status.message = DiagnosticStatus.OK, "waiting for images"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        pairs = [
            *((("camera", ch.name), ("image_topic", self._image_base_topic(ch))) if ch.name else ()),
            ("model", contract.name), ("model_path", str(self._model_path)),
            ("output_kind", contract.output_kind), ("backend", estimator.backend.name),
            ("device", estimator.backend.device),
            ("backend_check", self._checker.status if self._checker is not None
             else "not needed (onnxruntime is the reference)"),
            ("network_input", f"{contract.input.width}x{contract.input.height} {contract.input.resize}"),
            ("max_batch", str(estimator.max_batch)),
            ("lifecycle_state", self.state),
            ("frame_in_flight", "true" if ch.in_flight else "false"),
            ("input_model", self._input_model(ch)),
            ("input_qos", f"{self._values['input_qos_reliability']}, keep last {self._values['input_qos_depth']}"),
            ("output_qos", f"{self._values['output_qos_reliability']}, keep last {self._values['output_qos_depth']}"),
            ("qos_incompatible_events", str(sum(self.qos_events.values()))),
            *ch.stats.snapshot(),
            *(ch.scale.diagnostics() if ch.scale is not None else ()),
        ]
        if self._last_qos_problem:
            pairs.append(("qos_last_incompatible", self._last_qos_problem))
        if self._backend_fallback:
            pairs.append(("backend_fallback", self._backend_fallback))
        precision = getattr(estimator.backend, "precision", None)
        if precision is not None:
            pairs.append(("engine_precision", str(precision)))
        status.values = [KeyValue(key=k, value=v) for k, v in pairs]
        return status

    def stop(self) -> None:
        """Stop the worker (process exit); the lifecycle state is left as it is."""
        self._stop_work()


def main(args: list[str] | None = None) -> int:
    tune_malloc_for_large_messages()  # before the first multi-MB message (depth_ros.ros.memory)
    rclpy.init(args=args)
    node: DepthNode | None = None
    executor = SingleThreadedExecutor()
    try:
        node = DepthNode()
        if node._values["autostart"]:
            node.autostart()
        else:
            node.get_logger().info(f"autostart false: unconfigured; waiting for {node.get_fully_qualified_name()}"
                                   "/change_state (configure, then activate)")
        executor.add_node(node)
        # Spin until Ctrl-C, or until a lifecycle manager shuts the node down (its reply is sent first).
        while rclpy.ok() and node.state != FINALIZED:
            executor.spin_once(timeout_sec=0.1)
    except ConfigurationError as exc:
        print(f"depth_node: configuration error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        executor.shutdown(timeout_sec=0)
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
