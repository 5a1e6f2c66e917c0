"""The model contract: everything the node needs to run a depth model correctly.

Every ONNX model carries its contract as JSON in the ONNX ``metadata_props`` under the key
``depth_ros``. Model-specific facts (input size, normalisation, what the output means) live
here and nowhere else: the pipeline reads them, it never branches on a model's name.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

METADATA_KEY = "depth_ros"

OUTPUT_KINDS = (
    "canonical_inverse_depth",
    "metric_depth",
    "canonical_metric_depth",
    "relative_disparity",
)
RESIZE_MODES = ("stretch", "keep_aspect")
CHANNEL_ORDERS = ("rgb", "bgr")
CONFIDENCE_KINDS = ("sigma", "log_sigma", "confidence")

OutputKind = Literal[
    "canonical_inverse_depth", "metric_depth", "canonical_metric_depth", "relative_disparity"
]


class ContractError(ValueError):
    """A model contract is missing or invalid; the message says what to fix."""


@dataclass(frozen=True)
class InputSpec:
    """How an 8-bit image becomes the network's first input (float32 NCHW).

    value = (pixel * scale - mean[c]) / std[c], channels in ``channels`` order.
    ``height``/``width`` are the network input size; ``keep_aspect`` letterboxes the image into
    it (uniform scale, centred, padding = zero after normalisation) instead of stretching.
    ``multiple_of`` only matters for models with a dynamic input size (see preprocess).
    """

    height: int
    width: int
    resize: Literal["stretch", "keep_aspect"] = "stretch"
    channels: Literal["rgb", "bgr"] = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    multiple_of: int = 1


@dataclass(frozen=True)
class ConfidenceOutput:
    """A second network output with the model's own per-pixel uncertainty (read by core.confidence).

    ``index``: which ONNX output (>= 1; output 0 is the prediction), same layout as the prediction (the same
    crop and resize apply). ``kind``: ``sigma`` = the standard deviation of log depth (a relative error),
    ``log_sigma`` = its natural log, ``confidence`` = already in [0, 1], higher is better.
    """

    index: int = 1
    kind: Literal["sigma", "log_sigma", "confidence"] = "log_sigma"


@dataclass(frozen=True)
class ModelContract:
    """What a model's output means and how its input is prepared (see README, "Model contract")."""

    output_kind: OutputKind
    input: InputSpec
    focal_ratio: float | None = None  # metric_depth: f_train / W_train of the training camera
    canonical_focal: float | None = None  # canonical_metric_depth: pixels at the network input
    min_depth: float | None = None
    max_depth: float | None = None
    name: str = "unnamed model"
    license: str = ""
    source: str = ""
    confidence_output: ConfidenceOutput | None = None  # the model's uncertainty output, when it has one
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        extra = data.pop("extra")
        data["input"]["mean"] = list(self.input.mean)
        data["input"]["std"] = list(self.input.std)
        data = {k: v for k, v in data.items() if v is not None and v != ""}
        data.update(extra)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"model contract is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> ModelContract:
        if not isinstance(data, dict):
            raise ContractError("model contract must be a JSON object")
        kind = data.get("output_kind")
        if kind not in OUTPUT_KINDS:
            raise ContractError(
                f"model contract: output_kind {kind!r} is not one of {', '.join(OUTPUT_KINDS)}"
            )
        spec = _parse_input(data.get("input"))
        focal_ratio = _optional_positive(data, "focal_ratio")
        canonical_focal = _optional_positive(data, "canonical_focal")
        if kind == "canonical_metric_depth" and canonical_focal is None:
            raise ContractError(
                "model contract: output_kind canonical_metric_depth needs 'canonical_focal' "
                "(focal length in pixels at the network input, e.g. 1000 for Metric3D)"
            )
        min_depth = _optional_positive(data, "min_depth")
        max_depth = _optional_positive(data, "max_depth")
        if min_depth is not None and max_depth is not None and min_depth >= max_depth:
            raise ContractError(
                f"model contract: min_depth {min_depth} must be below max_depth {max_depth}"
            )
        known = {
            "output_kind", "input", "focal_ratio", "canonical_focal", "min_depth",
            "max_depth", "name", "license", "source", "confidence_output",
        }
        return cls(
            output_kind=kind,
            input=spec,
            focal_ratio=focal_ratio,
            canonical_focal=canonical_focal,
            min_depth=min_depth,
            max_depth=max_depth,
            name=str(data.get("name", "unnamed model")),
            license=str(data.get("license", "")),
            source=str(data.get("source", "")),
            confidence_output=_parse_confidence_output(data.get("confidence_output")),
            extra={k: v for k, v in data.items() if k not in known},
        )


def _parse_input(spec: Any) -> InputSpec:
    if not isinstance(spec, dict):
        raise ContractError(
            "model contract: 'input' must be an object with height, width, resize, channels, "
            "scale, mean and std"
        )
    missing = [k for k in ("height", "width", "resize", "channels", "scale", "mean", "std")
               if k not in spec]
    if missing:
        raise ContractError(f"model contract: input is missing {', '.join(missing)}")
    height, width = spec["height"], spec["width"]
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8192:
            raise ContractError(f"model contract: input.{name} must be an integer in [1, 8192], got {value!r}")
    if spec["resize"] not in RESIZE_MODES:
        raise ContractError(f"model contract: input.resize {spec['resize']!r} is not one of {RESIZE_MODES}")
    if spec["channels"] not in CHANNEL_ORDERS:
        raise ContractError(f"model contract: input.channels {spec['channels']!r} is not one of {CHANNEL_ORDERS}")
    scale = _finite(spec["scale"], "input.scale")
    if scale <= 0:
        raise ContractError(f"model contract: input.scale must be positive, got {scale}")
    mean = _triple(spec["mean"], "input.mean")
    std = _triple(spec["std"], "input.std")
    if any(s <= 0 for s in std):
        raise ContractError(f"model contract: input.std must be positive, got {list(std)}")
    multiple_of = spec.get("multiple_of", 1)
    if not isinstance(multiple_of, int) or isinstance(multiple_of, bool) or multiple_of < 1:
        raise ContractError(f"model contract: input.multiple_of must be a positive integer, got {multiple_of!r}")
    return InputSpec(
        height=height, width=width, resize=spec["resize"], channels=spec["channels"],
        scale=scale, mean=mean, std=std, multiple_of=multiple_of,
    )


def _parse_confidence_output(spec: Any) -> ConfidenceOutput | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"index", "kind"}:
        raise ContractError("model contract: confidence_output must be an object with 'index' (the ONNX output, "
                            f">= 1) and 'kind' (one of {', '.join(CONFIDENCE_KINDS)}), got {spec!r}")
    index = spec.get("index", 1)
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 64:
        raise ContractError(f"model contract: confidence_output.index must be an output index >= 1 (output 0 is "
                            f"the prediction), got {index!r}")
    kind = spec.get("kind", "log_sigma")
    if kind not in CONFIDENCE_KINDS:
        raise ContractError(f"model contract: confidence_output.kind {kind!r} is not one of "
                            f"{', '.join(CONFIDENCE_KINDS)}")
    return ConfidenceOutput(index=index, kind=kind)


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ContractError(f"model contract: {name} must be a finite number, got {value!r}")
    return float(value)


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ContractError(f"model contract: {name} must be a list of 3 numbers, got {value!r}")
    a, b, c = (_finite(v, name) for v in value)
    return (a, b, c)


def _optional_positive(data: dict[str, Any], key: str) -> float | None:
    if data.get(key) is None:
        return None
    value = _finite(data[key], key)
    if value <= 0:
        raise ContractError(f"model contract: {key} must be positive, got {value}")
    return value


def read_contract_from_onnx_metadata(metadata: dict[str, str], model_path: str) -> ModelContract:
    """Parse the contract from an ONNX model's metadata_props (as a dict)."""
    text = metadata.get(METADATA_KEY)
    if text is None:
        raise ContractError(
            f"model {model_path} carries no depth_ros contract (ONNX metadata_props key "
            f"'{METADATA_KEY}'). Add one with: depth-ros contract {model_path} --set contract.json "
            "(see README, 'Model contract')"
        )
    try:
        return ModelContract.from_json(text)
    except ContractError as exc:
        raise ContractError(f"model {model_path}: {exc}") from exc
