"""Tests for depth_ros.core.contract: JSON round trip, every validation error, reading from ONNX metadata."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from depth_ros.core.contract import (
    METADATA_KEY,
    ContractError,
    InputSpec,
    ModelContract,
    read_contract_from_onnx_metadata,
)

# A Depth-Anything-V2-like input (ImageNet normalisation, keep aspect, multiple of 14).
DA_INPUT: dict[str, Any] = {
    "height": 518,
    "width": 518,
    "resize": "keep_aspect",
    "channels": "rgb",
    "scale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "multiple_of": 14,
}


def valid(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "output_kind": "metric_depth",
        "input": copy.deepcopy(DA_INPUT),
        "focal_ratio": 0.75,
        "min_depth": 0.1,
        "max_depth": 20.0,
        "name": "test model",
        "license": "Apache-2.0",
        "source": "unit test",
    }
    data.update(overrides)
    return data


def with_input(**overrides: Any) -> dict[str, Any]:
    data = valid()
    data["input"].update(overrides)
    return data


def without_input_key(key: str) -> dict[str, Any]:
    data = valid()
    del data["input"][key]
    return data


# ----------------------------------------------------------------------------- parsing and round trip


def test_valid_contract_fields() -> None:
    contract = ModelContract.from_dict(valid())
    assert contract.output_kind == "metric_depth"
    assert contract.input == InputSpec(
        height=518, width=518, resize="keep_aspect", channels="rgb", scale=1.0 / 255.0,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), multiple_of=14,
    )
    assert (contract.focal_ratio, contract.canonical_focal) == (0.75, None)
    assert (contract.min_depth, contract.max_depth) == (0.1, 20.0)
    assert (contract.name, contract.license, contract.source) == ("test model", "Apache-2.0", "unit test")
    assert contract.extra == {}


def test_defaults_when_optional_keys_absent() -> None:
    contract = ModelContract.from_dict({"output_kind": "relative_disparity", "input": without_input_key(
        "multiple_of")["input"]})
    assert contract.input.multiple_of == 1
    assert contract.focal_ratio is None and contract.min_depth is None and contract.max_depth is None
    assert (contract.name, contract.license, contract.source) == ("unnamed model", "", "")


@pytest.mark.parametrize("data", [
    valid(),
    valid(output_kind="canonical_inverse_depth", focal_ratio=None, min_depth=None, max_depth=None),
    valid(output_kind="canonical_metric_depth", canonical_focal=1000.0, focal_ratio=None),
    valid(output_kind="relative_disparity", extra_field={"teacher": "vitl"}, version=3),
    with_input(resize="stretch", channels="bgr", multiple_of=1, scale=1.0, mean=[0, 0, 0], std=[1, 1, 1]),
], ids=["metric", "canonical_inverse", "canonical_metric", "extra_keys", "stretch_bgr"])
def test_json_round_trip(data: dict[str, Any]) -> None:
    contract = ModelContract.from_dict(data)
    text = contract.to_json()
    assert isinstance(json.loads(text), dict)
    again = ModelContract.from_json(text)
    assert again == contract
    assert again.to_json() == text  # stable (sorted keys)


def test_round_trip_keeps_unknown_keys_at_top_level() -> None:
    contract = ModelContract.from_dict(valid(extra_field={"teacher": "vitl"}, version=3))
    assert contract.extra == {"extra_field": {"teacher": "vitl"}, "version": 3}
    dumped = json.loads(contract.to_json())
    assert dumped["extra_field"] == {"teacher": "vitl"} and dumped["version"] == 3
    assert "extra" not in dumped


def test_to_json_omits_unset_optionals() -> None:
    contract = ModelContract.from_dict({"output_kind": "canonical_inverse_depth", "input": copy.deepcopy(DA_INPUT)})
    dumped = json.loads(contract.to_json())
    for key in ("focal_ratio", "canonical_focal", "min_depth", "max_depth", "license", "source"):
        assert key not in dumped
    assert dumped["input"]["mean"] == [0.485, 0.456, 0.406]
    assert dumped["input"]["std"] == [0.229, 0.224, 0.225]


def test_integers_accepted_for_numbers() -> None:
    contract = ModelContract.from_dict(with_input(scale=1, mean=[0, 0, 0], std=[1, 2, 3]))
    assert contract.input.scale == 1.0 and isinstance(contract.input.scale, float)
    assert contract.input.std == (1.0, 2.0, 3.0)


# ----------------------------------------------------------------------------- validation errors


def _without(key: str) -> dict[str, Any]:
    data = valid()
    del data[key]
    return data


ERRORS: list[tuple[str, Any, str]] = [
    ("missing output_kind", _without("output_kind"), "output_kind"),
    ("unknown output_kind", valid(output_kind="disparity"), "output_kind"),
    ("output_kind wrong type", valid(output_kind=3), "output_kind"),
    ("missing input", _without("input"), "input"),
    ("input not an object", valid(input=[518, 518]), "input"),
    ("missing height", without_input_key("height"), "height"),
    ("missing width", without_input_key("width"), "width"),
    ("missing resize", without_input_key("resize"), "resize"),
    ("missing channels", without_input_key("channels"), "channels"),
    ("missing scale", without_input_key("scale"), "scale"),
    ("missing mean", without_input_key("mean"), "mean"),
    ("missing std", without_input_key("std"), "std"),
    ("height zero", with_input(height=0), "input.height"),
    ("height float", with_input(height=518.0), "input.height"),
    ("height bool", with_input(height=True), "input.height"),
    ("width too large", with_input(width=8193), "input.width"),
    ("bad resize", with_input(resize="crop"), "input.resize"),
    ("bad channels", with_input(channels="rgba"), "input.channels"),
    ("scale zero", with_input(scale=0), "input.scale"),
    ("scale negative", with_input(scale=-1.0 / 255.0), "input.scale"),
    ("scale nan", with_input(scale=math.nan), "input.scale"),
    ("scale string", with_input(scale="1/255"), "input.scale"),
    ("std zero", with_input(std=[0.229, 0.0, 0.225]), "input.std"),
    ("std negative", with_input(std=[-1.0, 1.0, 1.0]), "input.std"),
    ("std two values", with_input(std=[1.0, 1.0]), "input.std"),
    ("mean four values", with_input(mean=[0.1, 0.2, 0.3, 0.4]), "input.mean"),
    ("mean infinite", with_input(mean=[math.inf, 0.0, 0.0]), "input.mean"),
    ("mean string", with_input(mean="imagenet"), "input.mean"),
    ("multiple_of zero", with_input(multiple_of=0), "input.multiple_of"),
    ("multiple_of float", with_input(multiple_of=14.0), "input.multiple_of"),
    ("canonical_metric_depth without canonical_focal",
     valid(output_kind="canonical_metric_depth"), "canonical_focal"),
    ("canonical_focal negative", valid(output_kind="canonical_metric_depth", canonical_focal=-1000), "canonical_focal"),
    ("focal_ratio zero", valid(focal_ratio=0.0), "focal_ratio"),
    ("focal_ratio string", valid(focal_ratio="0.75"), "focal_ratio"),
    ("min_depth negative", valid(min_depth=-0.1), "min_depth"),
    ("max_depth nan", valid(max_depth=math.nan), "max_depth"),
    ("min equals max", valid(min_depth=5.0, max_depth=5.0), "min_depth"),
    ("min above max", valid(min_depth=30.0, max_depth=20.0), "max_depth"),
]


@pytest.mark.parametrize(("data", "field"), [(d, f) for _, d, f in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_validation_error_names_field(data: Any, field: str) -> None:
    with pytest.raises(ContractError) as info:
        ModelContract.from_dict(data)
    assert field in str(info.value)
    assert str(info.value).startswith("model contract")


def test_missing_input_keys_are_all_listed() -> None:
    data = valid()
    data["input"] = {"height": 518, "width": 518, "resize": "stretch"}
    with pytest.raises(ContractError, match="input is missing channels, scale, mean, std"):
        ModelContract.from_dict(data)


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(ContractError) as info:
        ModelContract.from_dict(valid(output_kind="depth"))
    for kind in ("canonical_inverse_depth", "metric_depth", "canonical_metric_depth", "relative_disparity"):
        assert kind in str(info.value)


def test_not_json_and_not_object() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        ModelContract.from_json("{output_kind: metric_depth")
    with pytest.raises(ContractError, match="JSON object"):
        ModelContract.from_json("[1, 2]")
    with pytest.raises(ContractError, match="JSON object"):
        ModelContract.from_dict("metric_depth")


def test_contract_error_is_value_error() -> None:
    assert issubclass(ContractError, ValueError)


# ----------------------------------------------------------------------------- ONNX metadata


def test_read_from_metadata() -> None:
    contract = ModelContract.from_dict(valid())
    metadata = {"producer": "x", METADATA_KEY: contract.to_json()}
    assert read_contract_from_onnx_metadata(metadata, "/m/model.onnx") == contract


def test_metadata_without_contract_says_how_to_add_one() -> None:
    with pytest.raises(ContractError) as info:
        read_contract_from_onnx_metadata({"producer": "pytorch"}, "/models/da_v2.onnx")
    message = str(info.value)
    assert "/models/da_v2.onnx" in message
    assert METADATA_KEY == "depth_ros" and "'depth_ros'" in message
    assert "metadata_props" in message
    assert "depth-ros contract /models/da_v2.onnx --set contract.json" in message


def test_metadata_with_bad_contract_names_model_and_field() -> None:
    with pytest.raises(ContractError) as info:
        read_contract_from_onnx_metadata({METADATA_KEY: json.dumps(with_input(std=[1, 0, 1]))}, "/m/bad.onnx")
    assert "/m/bad.onnx" in str(info.value) and "input.std" in str(info.value)
    with pytest.raises(ContractError, match="/m/garbage.onnx.*not valid JSON"):
        read_contract_from_onnx_metadata({METADATA_KEY: "not json"}, "/m/garbage.onnx")
