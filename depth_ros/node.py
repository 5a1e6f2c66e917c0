"""depth_node: camera image + CameraInfo -> metric depth, its CameraInfo, a PointCloud2 and a colour view.

Wiring only: parameters, subscriptions, publishers, diagnostics. The work is done by the pure
pipeline (`depth_ros.pipeline`, `codecs`, `camera`, `pointcloud`, `colorize`).

Threading: subscription callbacks only store the newest image (the newest frame wins; a frame
replaced before the worker took it is counted as dropped); one worker thread runs inference and
publishes, so the executor never blocks on the model and never works through stale frames.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ros.backends import ModelLoadError
from depth_ros.camera import CameraInfoError
from depth_ros.contract import ContractError
from depth_ros.dds import PROFILE as LARGE_DATA_PROFILE
from depth_ros.diagnostics import PipelineStats, Throttle
from depth_ros.frame_processor import CAMERA_INFO, COLORED, DEPTH, POINTS, FrameProcessor, FrameSkipped, Wanted
from depth_ros.memory import tune_malloc_for_large_messages
from depth_ros.models import package_file, resolve_model_path
from depth_ros.navigation_msgs import NavigationOutputs
from depth_ros.navigation_msgs import create_publishers as create_navigation_publishers
from depth_ros.parameters import PARAMETERS, SPECS, ParamSpec, backend_options, recovery_settings, validate
from depth_ros.pipeline import DepthEstimator
from depth_ros.scale_recovery import (
    NoScaleFit,
    ReferenceInputError,
    ScaleRecoverer,
    reference_from_cloud_msg,
    reference_from_image_msg,
)


class ConfigurationError(RuntimeError):
    """Bad configuration: the node cannot start; the message says how to fix it."""


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if spec.choices is not None:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=spec.range[0], to_value=spec.range[1])]
        descriptor.dynamic_typing = True  # accept integers written in YAML (max_depth: 20); validated below
    elif spec.range is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return descriptor


def _coerce(spec: ParamSpec, value: Any) -> Any:
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class DepthNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_node", **kwargs)
        self._throttle = Throttle(5.0)
        self.stats = PipelineStats()
        self._values = self._declare_parameters()
        reason = validate(self._values)
        if reason is not None:
            raise ConfigurationError(f"{reason}. Fix it in the params file or with -p NAME:=VALUE")
        self._estimator = self._load_model()
        # The per-frame work, shared with `depth-ros bag process` (depth_ros.frame_processor).
        self._processor = FrameProcessor(self._estimator, self._values)

        reliability = (ReliabilityPolicy.RELIABLE if self._values["qos_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._values["qos_depth"],
                         reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        self._pub_depth = self.create_publisher(Image, "depth", qos)
        self._pub_info = self.create_publisher(CameraInfo, "depth/camera_info", qos)
        self._pub_points = self.create_publisher(PointCloud2, "points", qos)
        self._pub_colored = self.create_publisher(Image, "depth/colored", qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._publishers_by_kind = {DEPTH: self._pub_depth, CAMERA_INFO: self._pub_info,
                                    COLORED: self._pub_colored, POINTS: self._pub_points}
        self._navigation: NavigationOutputs | None = None
        if self._values["navigation_outputs"]:  # 'scan' and 'points_filtered' (README "Navigation (Nav2)")
            navigation_publishers = create_navigation_publishers(self, qos)
            self._publishers_by_kind.update(navigation_publishers)
            self._navigation = NavigationOutputs(navigation_publishers, warn=self.get_logger().warning)
            self._processor.extra_outputs = self._navigation

        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        self._scale = self._setup_scale_recovery(qos)
        if self._values["image_transport"] == "compressed":
            # image_transport convention: <base image topic>/compressed, after remapping the base.
            topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, qos)
        else:
            topic = self.resolve_topic_name("image")
            self.create_subscription(Image, "image", self._on_image, qos)

        self._pending: tuple[Any, float] | None = None
        self._pending_cv = threading.Condition()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="depth_worker", daemon=True)
        self._worker.start()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self._values["diagnostics_period"], self._publish_diagnostics)
        self._warn_without_large_data_profile()
        contract = self._estimator.contract
        self.get_logger().info(
            f"model '{contract.name}' ({self._model_path}, output {contract.output_kind}, input "
            f"{contract.input.width}x{contract.input.height} {contract.input.resize}) on "
            f"{self._estimator.backend.name}/{self._estimator.backend.device}; subscribed to {topic} "
            f"({self._values['image_transport']}, {self._values['qos_reliability']})"
        )

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
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            try:
                param = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except Exception as exc:  # rclpy raises per-type exceptions for bad overrides
                raise ConfigurationError(
                    f"parameter '{spec.name}': {exc}. Fix it in the params file or with -p {spec.name}:=VALUE"
                ) from exc
            values[spec.name] = _coerce(spec, param.value)
        return values

    def _load_model(self) -> DepthEstimator:
        self._model_path = resolve_model_path(self._values["model"])
        options = backend_options(self._values)
        try:
            return DepthEstimator.from_path(self._model_path, self._values["backend"], options)
        except (ModelLoadError, ContractError) as exc:
            raise ConfigurationError(str(exc)) from exc

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        proposed = dict(self._values)
        for param in params:
            spec = SPECS.get(param.name)
            if spec is None:
                continue
            proposed[param.name] = _coerce(spec, param.value)
        reason = validate(proposed)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
        self._values = proposed
        self._processor.configure(proposed)
        if self._scale is not None:
            self._scale.settings = recovery_settings(proposed)
        return SetParametersResult(successful=True)

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
        try:
            self._processor.camera_info(msg)
        except CameraInfoError as exc:
            allowed, held = self._throttle.allow("bad_camera_info")
            if allowed:
                self.get_logger().error(f"rejected CameraInfo on {self._sub_name('camera_info')}: {exc}")

    def _sub_name(self, name: str) -> str:
        return self.resolve_topic_name(name)

    def _setup_scale_recovery(self, qos: QoSProfile) -> ScaleRecoverer | None:
        """Online scale recovery (scale_source != fixed): its reference subscription and the estimator's hook."""
        source = self._values["scale_source"]
        if source == "fixed":
            return None
        recoverer = ScaleRecoverer(source, recovery_settings(self._values))
        if source == "depth":
            self.create_subscription(Image, "reference_depth", self._on_reference, qos)
        elif source == "points":
            self.create_subscription(PointCloud2, "reference_points", self._on_reference, qos)
        self._estimator.scale_hook = recoverer
        return recoverer

    def _on_reference(self, msg: Image | PointCloud2) -> None:
        assert self._scale is not None
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        topic = self._sub_name("reference_points" if isinstance(msg, PointCloud2) else "reference_depth")
        try:
            if stamp == 0.0:
                raise ReferenceInputError("its stamp is 0, so its age cannot be judged; stamp it with the capture time")
            if isinstance(msg, PointCloud2):
                reference = reference_from_cloud_msg(msg, stamp)
            else:
                reference = reference_from_image_msg(msg, stamp)
        except ReferenceInputError as exc:
            self._scale.reference_rejected("bad_input")
            allowed, held = self._throttle.allow("bad_reference")
            if allowed:
                suffix = f" ({held} more like this since the last report)" if held else ""
                self.get_logger().error(f"rejected scale reference on {topic}: {exc}{suffix}")
            return
        self._scale.set_reference(reference)

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
            try:
                self._process(msg, received)
            except Exception as exc:  # never let one bad frame stop the node
                try:
                    self._problem("processing_error", f"frame failed: {type(exc).__name__}: {exc}")
                except Exception:  # even reporting failed: still count it, keep the worker alive
                    self.stats.frame_skipped("processing_error", f"frame failed: {type(exc).__name__}")

    def _wanted(self) -> tuple[bool, bool, bool, bool]:
        return (self._pub_depth.get_subscription_count() > 0,
                self._pub_info.get_subscription_count() > 0,
                self._pub_points.get_subscription_count() > 0,
                self._pub_colored.get_subscription_count() > 0)

    def _process(self, msg: Image | CompressedImage, received: float) -> None:
        want_depth, want_info, want_points, want_colored = self._wanted()
        want_navigation = self._navigation is not None and self._navigation.wanted()
        if not (want_depth or want_info or want_points or want_colored or want_navigation):
            self.stats.frame_dropped("no_subscribers")
            return
        wanted = Wanted(depth=want_depth, colored=want_colored, points=want_points)
        if self._scale is not None:
            self._scale.begin_frame(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        try:
            timings = self._processor.process(msg, self._publish, wanted, self._sub_name("camera_info"))
        except FrameSkipped as skipped:
            self._problem(skipped.reason, skipped.message, level=skipped.level)
            return
        except NoScaleFit as exc:  # relative depth without a metric scale is never published
            self._problem("no_scale_fit", str(exc), level="warn")
            return
        timings["total"] = time.perf_counter() - received
        self.stats.frame_published(timings)

    def _publish(self, kind: str, msg: Any) -> None:
        self._publishers_by_kind[kind].publish(msg)

    # ----------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        contract = self._estimator.contract
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: depth pipeline", hardware_id=contract.name)
        problem = self.stats.recent_problem(within_s=max(5.0, 2 * self._values["diagnostics_period"]))
        if problem is not None:
            status.level, status.message = DiagnosticStatus.WARN, problem
        elif self.stats.received == 0:
            status.level, status.message = DiagnosticStatus.OK, "waiting for images"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        pairs = [
            ("model", contract.name), ("model_path", str(self._model_path)),
            ("output_kind", contract.output_kind), ("backend", self._estimator.backend.name),
            ("device", self._estimator.backend.device),
            ("network_input", f"{contract.input.width}x{contract.input.height} {contract.input.resize}"),
            *self.stats.snapshot(),
            *(self._scale.diagnostics() if self._scale is not None else ()),
        ]
        status.values = [KeyValue(key=k, value=v) for k, v in pairs]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)

    def stop(self) -> None:
        with self._pending_cv:
            self._running = False
            self._pending_cv.notify()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    tune_malloc_for_large_messages()  # before the first multi-MB message (depth_ros.memory)
    rclpy.init(args=args)
    node: DepthNode | None = None
    try:
        node = DepthNode()
        rclpy.spin(node)
    except ConfigurationError as exc:
        print(f"depth_node: configuration error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
