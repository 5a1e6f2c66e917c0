"""The node's parameters: one table (name, default, range or choices, whether runtime-changeable)
and the validation shared by startup and runtime changes. Pure Python, no ROS imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from depth_ros.backends import backend_names
from depth_ros.colorize import COLORMAPS
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

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "default", "ONNX model carrying a depth_ros contract: a path, or a file name in the "
              "package's models/ folder; 'default' is the embedded default model", read_only=True),
    ParamSpec("backend", "auto", "inference backend", choices=backend_names(), read_only=True),
    ParamSpec("device", "auto", "where the backend runs", choices=("auto", "cpu", "cuda"), read_only=True),
    ParamSpec("num_threads", 0, "CPU inference threads (0 = all cores)", range=(0, 256), read_only=True),
    ParamSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' "
              "subscribes sensor_msgs/CompressedImage on 'image/compressed'", choices=("raw", "compressed"),
              read_only=True),
    ParamSpec("qos_reliability", "best_effort", "reliability of all subscriptions and publishers "
              "(best_effort = sensor-data QoS; a reliable subscriber never matches a best-effort publisher)",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("qos_depth", 1, "history depth of the subscriptions and publishers (the newest frame wins "
              "anyway)", range=(1, 100), read_only=True),
    ParamSpec("input_rectified", "auto", "'auto': the image is raw when CameraInfo has non-zero distortion, "
              "else rectified; 'true': always rectified (use P, ignore D, like depth_image_proc); "
              "'false': always raw (use K and D)", choices=("auto", "true", "false")),
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
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", range=(0.1, 60.0),
              read_only=True),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """None when ``value`` is acceptable for ``spec``, else the reason it is not."""
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
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
    if values["model"].strip() == "":
        return "parameter 'model' is empty; give an .onnx path or 'default'"
    return None


def pipeline_settings(values: dict[str, Any]) -> PipelineSettings:
    return PipelineSettings(
        output_scale=float(values["output_scale"]),
        min_depth=float(values["min_depth"]),
        max_depth=float(values["max_depth"]),
        disparity_scale=float(values["disparity_scale"]),
        disparity_shift=float(values["disparity_shift"]),
        focal_rescale=bool(values["focal_rescale"]),
    )
