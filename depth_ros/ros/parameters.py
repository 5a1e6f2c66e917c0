"""The node's parameters: one table (name, default, range or choices, whether runtime-changeable)
and the validation shared by startup and runtime changes. Pure Python, no ROS imports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_ros.backends import ENGINE_PRECISIONS, BackendOptions, backend_names
from depth_ros.backends.check import CHECK_POLICIES
from depth_ros.core.colorize import COLORMAPS
from depth_ros.core.scale_recovery import SOURCES as SCALE_SOURCES
from depth_ros.core.scale_recovery import RecoverySettings
from depth_ros.core.temporal import TemporalSettings
from depth_ros.pipeline import PipelineSettings


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any  # its type is the parameter's type (str, int, float, bool)
    description: str
    choices: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None  # inclusive
    read_only: bool = False  # fixed after startup (needs a restart to change)


_DEFAULTS = PipelineSettings()
_RECOVERY = RecoverySettings()
_TEMPORAL = TemporalSettings()

QOS_RELIABILITIES = ("best_effort", "reliable")

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "configure and activate at startup; false: stay unconfigured until a lifecycle "
              "manager drives <node>/change_state (Nav2's lifecycle_manager, ros2 lifecycle set)", read_only=True),
    ParamSpec("model", "default", "ONNX model carrying a depth_ros contract: a path, or a file name in the "
              "package's models/ folder; 'default' is the embedded default model", read_only=True),
    ParamSpec("backend", "auto", "inference backend", choices=backend_names(), read_only=True),
    ParamSpec("device", "auto", "where the backend runs", choices=("auto", "cpu", "cuda"), read_only=True),
    ParamSpec("num_threads", 0, "CPU inference threads (0 = all cores)", range=(0, 256), read_only=True),
    ParamSpec("engine_cache_dir", "", "backend tensorrt: directory of the engine cache (engines keyed by GPU, "
              "TensorRT version, ONNX hash, input shape and precision; built on first use); '' = "
              "$DEPTH_ROS_ENGINE_CACHE or ~/.cache/depth_ros/engines", read_only=True),
    ParamSpec("engine_precision", "fp16", "backend tensorrt: precision the engine is built at (fp16: mixed "
              "precision from ModelOpt AutoCast, normalisation/softmax/reductions and I/O in FP32)",
              choices=ENGINE_PRECISIONS, read_only=True),
    ParamSpec("backend_check", "rebuild", "startup correctness check of a backend other than ONNX Runtime: two "
              "probe images through it and through ONNX Runtime on the CPU (same model); above the tolerances "
              "'rebuild' rebuilds an FP16 TensorRT engine at FP32 and checks again (then fails), 'fail' fails, "
              "'warn' logs and runs it anyway, 'off' skips the check", choices=CHECK_POLICIES, read_only=True),
    ParamSpec("backend_check_tolerance", 0.02, "backend_check: the largest median relative error of the "
              "prediction accepted (0.02 = 2 %; FP16 engines typically give 0.1-0.5 %)", range=(1e-6, 1.0),
              read_only=True),
    ParamSpec("backend_check_max_error", 0.25, "backend_check: the largest per-pixel relative error accepted",
              range=(1e-6, 100.0), read_only=True),
    ParamSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' "
              "subscribes sensor_msgs/CompressedImage on 'image/compressed'", choices=("raw", "compressed"),
              read_only=True),
    # REP-2003: sensor drivers publish reliable or best effort, consumers subscribe as they like. A
    # best-effort subscription matches either kind of publisher; a reliable publisher matches either kind of
    # subscriber (RViz2 and image_transport default to reliable, Nav2 to best effort). Keep-last history
    # never blocks the node on a slow or vanished reliable subscriber: the oldest unsent sample is replaced.
    ParamSpec("input_qos_reliability", "best_effort", "reliability of the image, camera_info and reference "
              "subscriptions; best_effort matches reliable and best-effort publishers (REP-2003)",
              choices=QOS_RELIABILITIES, read_only=True),
    ParamSpec("input_qos_depth", 1, "history depth of the subscriptions (the newest frame wins anyway)",
              range=(1, 100), read_only=True),
    ParamSpec("output_qos_reliability", "reliable", "reliability of the output publishers; reliable matches "
              "reliable subscribers (RViz2, image_transport, depth_image_proc) and best-effort ones (Nav2)",
              choices=QOS_RELIABILITIES, read_only=True),
    ParamSpec("output_qos_depth", 1, "history depth of the output publishers (keep-last: a slow reliable "
              "subscriber loses old samples instead of slowing the node)", range=(1, 100), read_only=True),
    ParamSpec("input_rectified", "auto", "'auto': rectified (P, D ignored) when the image topic's base name "
              "starts with image_rect, otherwise raw (K + D) when CameraInfo has non-zero D; true: always "
              "rectified, like depth_image_proc; false: always raw. true/false may be booleans or strings",
              choices=("auto", "true", "false")),
    ParamSpec("depth_encoding", "32FC1", "32FC1 = metres with NaN for invalid; 16UC1 = millimetres with 0 "
              "for invalid (REP-118)", choices=("32FC1", "16UC1")),
    ParamSpec("output_scale", _DEFAULTS.output_scale, "depth image size relative to the input image",
              range=(0.05, 1.0)),
    ParamSpec("min_depth", _DEFAULTS.min_depth, "metres; nearer depth becomes invalid", range=(0.0, 1000.0)),
    ParamSpec("max_depth", _DEFAULTS.max_depth, "metres; farther depth becomes invalid", range=(0.001, 100000.0)),
    ParamSpec("cloud_stride", 1, "publish every n-th pixel of every n-th row in the point cloud", range=(1, 64)),
    ParamSpec("cloud_color", False, "add packed rgb (FLOAT32 at offset 16, point_step 32) to the cloud"),
    ParamSpec("colormap", "turbo", "colour map of depth/colored", choices=tuple(COLORMAPS)),
    ParamSpec("colored_min_depth", 0.0, "metres at the warm end of depth/colored (0 = per-frame robust range)",
              range=(0.0, 1000.0)),
    ParamSpec("colored_max_depth", 0.0, "metres at the cold end of depth/colored (0 = per-frame robust range)",
              range=(0.0, 100000.0)),
    ParamSpec("disparity_scale", _DEFAULTS.disparity_scale, "relative_disparity models: 1/depth = "
              "disparity_scale * d + disparity_shift", range=(-1e9, 1e9)),
    ParamSpec("disparity_shift", _DEFAULTS.disparity_shift, "relative_disparity models: see disparity_scale",
              range=(-1e9, 1e9)),
    ParamSpec("focal_rescale", _DEFAULTS.focal_rescale, "metric_depth models that declare focal_ratio: "
              "rescale depth by (fx/width) / focal_ratio"),
    # On in the node (off in the library's PipelineSettings): flying pixels are phantom obstacles, and the filter
    # removes 97-98 % of them for 0.2-2.3 % of true-surface pixels and 0.6 ms a frame (README "edge filter").
    ParamSpec("edge_filter", True, "depth discontinuities become invalid in depth, points, scan "
              "and points_filtered: the flying pixels a network puts between a foreground and a background"),
    ParamSpec("edge_threshold", _DEFAULTS.edge_threshold, "edge_filter: a pixel is a discontinuity when, within "
              "one network pixel, there is depth more than this (relative) nearer and farther than its own",
              range=(0.001, 10.0)),
    ParamSpec("temporal_filter", False, "stabilise depth over time: static parts settle (scale jitter and noise "
              "averaged in log depth), changes are followed at once; resets on a new CameraInfo, image size, a scene "
              "cut or a jump in message time"),
    ParamSpec("temporal_time_constant", _TEMPORAL.time_constant, "temporal_filter: seconds of message time over "
              "which a static pixel settles (bags replay like live data)", range=(0.001, 60.0)),
    ParamSpec("scale_source", "fixed", "metric scale of relative_disparity models (a scale-only refinement for "
              "metric ones): 'fixed' = disparity_scale/shift; 'depth' = a metric depth image on 'reference_depth' "
              "(32FC1 m or 16UC1 mm, registered to the camera); 'points' = a PointCloud2 on 'reference_points' in "
              "the camera's optical frame; 'ground_plane' = a flat floor from camera_height and camera_pitch",
              choices=SCALE_SOURCES, read_only=True),
    ParamSpec("scale_smoothing", _RECOVERY.smoothing_s, "seconds (message time): time constant of the "
              "exponential filter on the recovered scale and shift (0 = each frame's fit as is)", range=(0.0, 3600.0)),
    ParamSpec("reference_max_age", _RECOVERY.max_age_s, "seconds: a reference whose stamp is further than this "
              "from the image's is stale; the last good fit is held", range=(0.001, 3600.0)),
    ParamSpec("reference_min_points", _RECOVERY.min_points, "fewest usable reference points (pixels) for a "
              "scale fit", range=(3, 1000000)),
    ParamSpec("batch_window", 0.005, "seconds: with several cameras and a model that batches, a round of the worker "
              "waits up to this long, once it has one camera's frame, for the other active cameras' frames, so that "
              "cameras triggered together share one forward pass (0 = never wait)", range=(0.0, 1.0)),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", range=(0.1, 60.0),
              read_only=True),
    # Navigation outputs (README "Navigation (Nav2)"): 'scan' and 'points_filtered'.
    ParamSpec("navigation_outputs", False, "also publish 'scan' (LaserScan) and 'points_filtered' (costmap "
              "PointCloud2), each computed only while subscribed", read_only=True),
    ParamSpec("scan_height", 1, "rows of the depth image in the scan band (the nearest range over them)",
              range=(1, 16384)),
    ParamSpec("scan_row", -1, "depth-image row at the centre of the scan band; -1 = the principal point's row",
              range=(-1, 16384)),
    ParamSpec("scan_frame", "", "frame_id of 'scan' (x forward, y left, at the camera); '' = the image's "
              "frame_id without '_optical' (camera_color_optical_frame -> camera_color_frame)"),
    ParamSpec("range_min", 0.1, "metres; nearer scan readings are ignored (-inf when a bin has nothing else)",
              range=(0.0, 1000.0)),
    ParamSpec("range_max", 5.0, "metres; farther scan readings become +inf (no obstacle within range_max)",
              range=(0.001, 100000.0)),
    ParamSpec("voxel_size", 0.05, "metres; edge of the voxel grid of 'points_filtered' (one centroid per "
              "voxel); 0 = no downsampling", range=(0.0, 100.0)),
    ParamSpec("filter_max_range", 5.0, "metres; 'points_filtered' keeps points nearer than this to the camera",
              range=(0.001, 100000.0)),
    ParamSpec("camera_height", 0.0, "metres of the camera's optical centre above the floor; 0 = unknown "
              "(no height filter on 'points_filtered')", range=(0.0, 1000.0)),
    ParamSpec("camera_pitch", 0.0, "radians the camera looks down (negative = up); no roll",
              range=(-1.5707963267948966, 1.5707963267948966)),
    ParamSpec("min_obstacle_height", 0.05, "metres above the floor; lower points (the floor) are dropped from "
              "'points_filtered' when camera_height is set", range=(-1000.0, 1000.0)),
    ParamSpec("max_obstacle_height", 2.0, "metres above the floor; higher points are dropped from "
              "'points_filtered' when camera_height is set", range=(-1000.0, 1000.0)),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}

# Parameters of earlier releases: giving one stops the node at startup with what replaces it.
REMOVED_PARAMETERS: dict[str, str] = {
    "qos_reliability": "it set both sides at once, so either reliable subscribers (RViz2) or best-effort drivers "
                       "never matched; use input_qos_reliability (default best_effort) and output_qos_reliability "
                       "(default reliable)",
    "qos_depth": "use input_qos_depth and output_qos_depth",
}

_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")


def accepts_bool(spec: ParamSpec) -> bool:
    """Whether a user may write true/false for ``spec`` (ROS types `true` as a bool on the command line and in
    YAML, `"true"` as a string): bool parameters and string parameters whose choices include true/false."""
    return isinstance(spec.default, bool) or (spec.choices is not None and {"true", "false"} <= set(spec.choices))


def normalise(spec: ParamSpec, value: Any) -> Any:
    """A value as ROS delivered it -> the value of the parameter's own type (unchanged when it cannot be)."""
    if isinstance(spec.default, bool):
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        return value
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, str) and isinstance(value, bool) and accepts_bool(spec):
        return "true" if value else "false"
    if isinstance(spec.default, str) and isinstance(value, str) and accepts_bool(spec):
        lowered = value.strip().lower()
        return "true" if lowered in _TRUE_WORDS else "false" if lowered in _FALSE_WORDS else value
    return value


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """None when ``value`` is acceptable for ``spec``, else the reason it is not."""
    expected = type(spec.default)
    value = normalise(spec, value)
    if type(value) is not expected:
        return f"parameter '{spec.name}' must be a {expected.__name__}, got {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"parameter '{spec.name}' is {value!r}; choose one of {', '.join(spec.choices)}"
    if spec.range is not None and not (spec.range[0] <= value <= spec.range[1]):
        return f"parameter '{spec.name}' is {value!r}; it must be within [{spec.range[0]}, {spec.range[1]}]"
    return None


def validate(values: dict[str, Any]) -> str | None:
    """Check a full set of parameter values, including the rules that tie several together."""
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is not None and (reason := check_value(spec, value)) is not None:
            return reason
    if values["min_depth"] >= values["max_depth"]:
        return f"min_depth ({values['min_depth']}) must be below max_depth ({values['max_depth']})"
    low, high = values["colored_min_depth"], values["colored_max_depth"]
    if low > 0 and high > 0 and low >= high:
        return f"colored_min_depth ({low}) must be below colored_max_depth ({high})"
    if values["range_min"] >= values["range_max"]:
        return f"range_min ({values['range_min']}) must be below range_max ({values['range_max']})"
    if values["min_obstacle_height"] >= values["max_obstacle_height"]:
        return (f"min_obstacle_height ({values['min_obstacle_height']}) must be below max_obstacle_height "
                f"({values['max_obstacle_height']})")
    if values["model"].strip() == "":
        return "parameter 'model' is empty; give an .onnx path or 'default'"
    if (reason := _engine_cache_dir_problem(values.get("engine_cache_dir", ""))) is not None:
        return reason
    if values["scale_source"] == "ground_plane" and values["camera_height"] <= 0.0:
        return ("scale_source 'ground_plane' needs camera_height > 0 (metres of the camera above the floor) "
                "and camera_pitch (radians, positive = looking down)")
    return None


def _engine_cache_dir_problem(text: str) -> str | None:
    """A cache directory that can never work (a file, surrounding blanks) is refused at startup rather than
    when the first engine build fails minutes later. One that does not exist yet is fine: it is created."""
    if text == "":
        return None
    if text != text.strip():
        return f"parameter 'engine_cache_dir' is {text!r}: remove the leading/trailing blanks"
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        return f"parameter 'engine_cache_dir' is {text!r}, which is a file, not a directory"
    return None


def backend_options(values: dict[str, Any]) -> BackendOptions:
    return BackendOptions(
        num_threads=int(values["num_threads"]),
        device=str(values["device"]),
        engine_cache_dir=str(values["engine_cache_dir"]),
        engine_precision=str(values["engine_precision"]),
    )


def pipeline_settings(values: dict[str, Any]) -> PipelineSettings:
    return PipelineSettings(
        output_scale=float(values["output_scale"]),
        min_depth=float(values["min_depth"]),
        max_depth=float(values["max_depth"]),
        disparity_scale=float(values["disparity_scale"]),
        disparity_shift=float(values["disparity_shift"]),
        focal_rescale=bool(values["focal_rescale"]),
        edge_filter=bool(values["edge_filter"]),
        edge_threshold=float(values["edge_threshold"]),
    )


def temporal_settings(values: Mapping[str, Any]) -> TemporalSettings | None:
    """The temporal filter's settings, or None when it is off."""
    if not values["temporal_filter"]:
        return None
    return TemporalSettings(time_constant=float(values["temporal_time_constant"]))


def recovery_settings(values: dict[str, Any]) -> RecoverySettings:
    return RecoverySettings(
        smoothing_s=float(values["scale_smoothing"]),
        max_age_s=float(values["reference_max_age"]),
        min_points=int(values["reference_min_points"]),
        camera_height=float(values["camera_height"]),
        camera_pitch=float(values["camera_pitch"]),
        max_depth=float(values["max_depth"]),
    )
