"""depth_node: camera image + CameraInfo -> metric depth, its CameraInfo, a PointCloud2 and a colour view.

Wiring only: parameters, lifecycle, subscriptions, publishers, diagnostics. The per-frame work is
`depth_ros.ros.frame_processor.FrameProcessor` (shared with `depth-ros bag process`).

Lifecycle (managed node, REP-less but the ROS 2 standard state machine, as Nav2 drives it):
unconfigured --configure (load + check the model, create publishers)--> inactive --activate (subscribe,
start the worker)--> active; deactivate / cleanup (free the backend) / shutdown go back. With
`autostart: true` (default) the node configures and activates itself, so `ros2 run` works unmanaged.

Threading: subscription callbacks only store the newest image (the newest frame wins; a frame
replaced before the worker took it is counted as dropped); one worker thread runs inference and
publishes, so the executor (CameraInfo, parameters, lifecycle services, diagnostics) never waits for
the model. Parameter changes swap the settings the next frame reads; they never wait for a frame.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
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


class DepthNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_node", **kwargs)
        self._throttle = Throttle(5.0)
        self._values = self._declare_parameters()
        reason = validate(self._values)
        if reason is not None:
            raise ConfigurationError(f"{reason}. Fix it in the params file or with -p NAME:=VALUE")
        self.state = UNCONFIGURED
        self.configure_error = ""  # why the last configure failed (also logged)
        use_sim_time = bool(self.get_parameter("use_sim_time").value)
        # Rates follow the node's clock under use_sim_time (a paused or looped bag), wall time otherwise.
        self._clock_seconds: Callable[[], float] = (
            (lambda: self.get_clock().now().nanoseconds * 1e-9) if use_sim_time else time.monotonic)
        self.stats = PipelineStats(clock=self._clock_seconds)
        self.qos_events: Counter[str] = Counter()
        self._last_qos_problem = ""
        self._estimator: DepthEstimator | None = None
        self._checker: BackendChecker | None = None
        self._backend_fallback = ""
        self._processor: FrameProcessor | None = None
        self._scale: ScaleRecoverer | None = None
        self._navigation: NavigationOutputs | None = None
        self._publishers_by_kind: dict[str, Any] = {}
        self._pub_diag: Any = None
        self._diag_timer: Any = None
        self._subscriptions_active: list[Any] = []
        self._pending: tuple[Any, float] | None = None
        self._pending_cv = threading.Condition()
        self._running = False
        self._in_flight = False  # the worker holds a frame (diagnostics: frame_in_flight)
        self._worker: threading.Thread | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._warn_without_large_data_profile()
        self.get_logger().info(describe_input_rule(self._values["input_rectified"], self._image_base_topic()))

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

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        proposed = dict(self._values)
        for param in params:
            spec = SPECS.get(param.name)
            if spec is None:
                continue
            value = normalise(spec, param.value)
            if spec.read_only and value != self._values[spec.name] and self.state != UNCONFIGURED:
                return SetParametersResult(successful=False, reason=(
                    f"'{spec.name}' takes effect at configure: deactivate and clean up the node "
                    f"(ros2 lifecycle set {self.get_fully_qualified_name()} cleanup), set it, then configure"))
            proposed[spec.name] = value
        reason = validate(proposed)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        self._values = proposed
        # Never blocks: the frame in flight keeps its settings, the next one takes these.
        if self._processor is not None:
            self._processor.configure(proposed)
        if self._scale is not None:
            self._scale.settings = recovery_settings(proposed)
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

    def _image_base_topic(self) -> str:
        return self.resolve_topic_name("image")

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
        try:
            estimator = DepthEstimator.from_path(model_path, self._values["backend"], backend_options(self._values),
                                                 warn=self._on_backend_fallback)
            self._checker = self._backend_checker(estimator, model_path)
        except (ModelLoadError, ContractError) as exc:
            raise ConfigurationError(str(exc)) from exc
        self._model_path = model_path
        self._estimator = estimator
        image_topic = self._image_base_topic()
        self._processor = FrameProcessor(estimator, self._values, image_topic=image_topic)
        self._processor.on_frame = self._on_frame
        self._scale = None
        if self._values["scale_source"] != "fixed":
            self._scale = ScaleRecoverer(self._values["scale_source"], recovery_settings(self._values))
            estimator.scale_hook = self._scale

        qos = self._qos("output")
        self._publishers_by_kind = {kind: self._publisher(msg_type, kind, qos) for kind, msg_type in
                                    ((DEPTH, Image), (CAMERA_INFO, CameraInfo), (COLORED, Image),
                                     (CONFIDENCE, Image), (POINTS, PointCloud2))}
        self._navigation = None
        if self._values["navigation_outputs"]:  # 'scan' and 'points_filtered' (README "Navigation (Nav2)")
            navigation_publishers = create_navigation_publishers(self._publisher, qos)
            self._publishers_by_kind.update(navigation_publishers)
            self._navigation = NavigationOutputs(navigation_publishers, warn=self.get_logger().warning)
            self._processor.extra_outputs = self._navigation
        self._pub_diag = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        # Wall (steady) time: under use_sim_time a paused bag stops the clock and a looped one sends it back, and a
        # sim-time timer would then stop publishing diagnostics; the values themselves follow the node's clock.
        self._diag_timer = self.create_timer(self._values["diagnostics_period"], self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        contract = estimator.contract
        self.get_logger().info(
            f"configured: model '{contract.name}' ({model_path}, output {contract.output_kind}, input "
            f"{contract.input.width}x{contract.input.height} {contract.input.resize}) on "
            f"{estimator.backend.name}/{estimator.backend.device}"
        )

    def _on_frame(self, frame: DepthFrame) -> None:
        values = self._processor.values if self._processor is not None else {}
        if values.get("edge_filter"):
            self.stats.edges_filtered(frame.edge_pixels / max(1, frame.depth.size))
        if values.get("temporal_filter"):
            self.stats.temporal_filtered(frame.temporal_reset)

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
        assert self._processor is not None
        self._subscribe(CameraInfo, "camera_info", self._on_camera_info)
        if self._values["scale_source"] == "depth":
            self._subscribe(Image, "reference_depth", self._on_reference)
        elif self._values["scale_source"] == "points":
            self._subscribe(PointCloud2, "reference_points", self._on_reference)
        if self._values["image_transport"] == "compressed":
            # image_transport convention: <base image topic>/compressed, after remapping the base.
            topic = self._image_base_topic() + "/compressed"
            self._subscribe(CompressedImage, topic, self._on_image)
        else:
            topic = self._image_base_topic()
            self._subscribe(Image, "image", self._on_image)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="depth_worker", daemon=True)
        self._worker.start()
        self.state = ACTIVE
        result = super().on_activate(state)  # activates the lifecycle publishers
        self.get_logger().info(
            f"active: subscribed to {topic} ({self._values['image_transport']}, "
            f"{self._values['input_qos_reliability']}), publishing {self._values['output_qos_reliability']}")
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
        """Unsubscribe and stop the worker (the frame in flight finishes first); a frame never taken is counted."""
        for subscription in self._subscriptions_active:
            self.destroy_subscription(subscription)
        self._subscriptions_active = []
        with self._pending_cv:
            self._running = False
            if self._pending is not None:
                self._pending = None
                self.stats.frame_dropped("deactivated")
            self._pending_cv.notify()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _release(self) -> None:
        """Back to unconfigured: publishers, timer and the backend (its memory) freed."""
        for publisher in self._publishers_by_kind.values():
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_by_kind = {}
        if self._pub_diag is not None:
            self.destroy_lifecycle_publisher(self._pub_diag)
            self._pub_diag = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._navigation = None
        self._processor = None
        self._scale = None
        self._estimator = None
        self._checker = None
        gc.collect()  # the backend's session/engine goes now, not at some later collection
        self.state = UNCONFIGURED

    # ----------------------------------------------------------------- inputs
    def _problem(self, reason: str, message: str, level: str = "error") -> None:
        """Count a skipped frame and log it, throttled per reason."""
        self.stats.frame_skipped(reason, message)
        allowed, held = self._throttle.allow(reason)
        if allowed:
            suffix = f" ({held} more like this since the last report)" if held else ""
            # One call site per severity: rclpy raises ValueError when one call site logs at two severities.
            if level == "warn":
                self.get_logger().warning(message + suffix)
            else:
                self.get_logger().error(message + suffix)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        processor = self._processor
        if processor is None:
            return
        try:
            processor.camera_info(msg)
        except CameraInfoError as exc:
            allowed, held = self._throttle.allow("bad_camera_info")
            if allowed:
                self.get_logger().error(f"rejected CameraInfo on {self.resolve_topic_name('camera_info')}: {exc}")

    def _on_reference(self, msg: Image | PointCloud2) -> None:
        scale = self._scale
        if scale is None:
            return
        stamp = _seconds(msg.header.stamp)
        topic = self.resolve_topic_name("reference_points" if isinstance(msg, PointCloud2) else "reference_depth")
        try:
            if stamp == 0.0:
                raise ReferenceInputError("its stamp is 0, so its age cannot be judged; stamp it with the capture time")
            if isinstance(msg, PointCloud2):
                reference = reference_from_cloud_msg(msg, stamp)
            else:
                reference = reference_from_image_msg(msg, stamp)
        except ReferenceInputError as exc:
            scale.reference_rejected("bad_input")
            allowed, held = self._throttle.allow("bad_reference")
            if allowed:
                suffix = f" ({held} more like this since the last report)" if held else ""
                self.get_logger().error(f"rejected scale reference on {topic}: {exc}{suffix}")
            return
        scale.set_reference(reference)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.frame_received()
        with self._pending_cv:
            if self._pending is not None:
                self.stats.frame_dropped("superseded")
            self._pending = (msg, time.perf_counter())
            self._pending_cv.notify()

    # ----------------------------------------------------------------- work
    def _work(self) -> None:
        while True:
            with self._pending_cv:
                while self._pending is None and self._running:
                    self._pending_cv.wait(0.5)
                if not self._running:
                    return
                assert self._pending is not None
                msg, received = self._pending
                self._pending = None
                self._in_flight = True
            try:
                self._process(msg, received)
            except Exception as exc:  # never let one bad frame stop the node
                try:
                    self._problem("processing_error", f"frame failed: {type(exc).__name__}: {exc}")
                except Exception:  # even reporting failed: still count it, keep the worker alive
                    self.stats.frame_skipped("processing_error", f"frame failed: {type(exc).__name__}")
            finally:
                self._in_flight = False

    def _process(self, msg: Image | CompressedImage, received: float) -> None:
        processor, publishers = self._processor, self._publishers_by_kind
        assert processor is not None
        want = {kind: publishers[kind].get_subscription_count() > 0
                for kind in (DEPTH, CAMERA_INFO, POINTS, COLORED, CONFIDENCE)}
        want_navigation = self._navigation is not None and self._navigation.wanted()
        if not (any(want.values()) or want_navigation):
            self.stats.frame_dropped("no_subscribers")
            return
        wanted = Wanted(depth=want[DEPTH], colored=want[COLORED], points=want[POINTS], confidence=want[CONFIDENCE])
        if self._scale is not None:
            self._scale.begin_frame(_seconds(msg.header.stamp))
        try:
            timings = processor.process(msg, lambda kind, out: publishers[kind].publish(out), wanted,
                                        self.resolve_topic_name("camera_info"))
        except FrameSkipped as skipped:
            self._problem(skipped.reason, skipped.message, level=skipped.level)
            return
        except BackendCheckError as exc:  # a dynamic model's first size failed the check: never publish its depth
            self._problem("backend_check_failed", str(exc))
            return
        except NoScaleFit as exc:  # relative depth without a metric scale is never published
            self._problem("no_scale_fit", str(exc), level="warn")
            return
        timings["total"] = time.perf_counter() - received
        self.stats.frame_published(timings)

    # ----------------------------------------------------------------- diagnostics
    def _input_model(self) -> str:
        """What the latest CameraInfo made of the input: rectified (P) or raw (K + D)."""
        processor = self._processor
        camera = processor.cameras.latest() if processor is not None else None
        return camera.input_model if camera is not None else "unknown (no CameraInfo yet)"

    def _publish_diagnostics(self) -> None:
        estimator, publisher = self._estimator, self._pub_diag
        if self.state != ACTIVE or estimator is None or publisher is None:
            return
        contract = estimator.contract
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: depth pipeline", hardware_id=contract.name)
        within = max(5.0, 2 * self._values["diagnostics_period"])
        problem = self.stats.recent_problem(within_s=within)
        if problem is not None:
            status.level, status.message = DiagnosticStatus.WARN, problem
        elif self._last_qos_problem:
            status.level, status.message = DiagnosticStatus.WARN, self._last_qos_problem
        elif self.stats.received == 0:
            status.level, status.message = DiagnosticStatus.OK, "waiting for images"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        pairs = [
            ("model", contract.name), ("model_path", str(self._model_path)),
            ("output_kind", contract.output_kind), ("backend", estimator.backend.name),
            ("device", estimator.backend.device),
            ("backend_check", self._checker.status if self._checker is not None
             else "not needed (onnxruntime is the reference)"),
            ("network_input", f"{contract.input.width}x{contract.input.height} {contract.input.resize}"),
            ("lifecycle_state", self.state),
            ("frame_in_flight", "true" if self._in_flight else "false"),
            ("input_model", self._input_model()),
            ("input_qos", f"{self._values['input_qos_reliability']}, keep last {self._values['input_qos_depth']}"),
            ("output_qos", f"{self._values['output_qos_reliability']}, keep last {self._values['output_qos_depth']}"),
            ("qos_incompatible_events", str(sum(self.qos_events.values()))),
            *self.stats.snapshot(),
            *(self._scale.diagnostics() if self._scale is not None else ()),
        ]
        if self._last_qos_problem:
            pairs.append(("qos_last_incompatible", self._last_qos_problem))
        if self._backend_fallback:
            pairs.append(("backend_fallback", self._backend_fallback))
        precision = getattr(estimator.backend, "precision", None)
        if precision is not None:
            pairs.append(("engine_precision", str(precision)))
        status.values = [KeyValue(key=k, value=v) for k, v in pairs]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        publisher.publish(array)

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
