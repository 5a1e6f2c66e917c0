"""Tests for depth_ros.ros.parameters: every ParamSpec's checks, the cross-parameter rules, and that
config/depth.yaml never drifts from the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from depth_ros.pipeline import PipelineSettings
from depth_ros.ros.parameters import (
    PARAMETERS,
    REMOVED_PARAMETERS,
    SPECS,
    ParamSpec,
    accepts_bool,
    check_value,
    normalise,
    pipeline_settings,
    validate,
)

CONFIG = Path(__file__).resolve().parents[2] / "config" / "depth.yaml"
IDS = [spec.name for spec in PARAMETERS]


def defaults() -> dict[str, Any]:
    return {spec.name: spec.default for spec in PARAMETERS}


def wrong_type_values(spec: ParamSpec) -> list[Any]:
    kind = type(spec.default)
    if kind is str:
        return [1, 1.0, None, ["auto"]] + ([] if accepts_bool(spec) else [True])
    if kind is bool:
        return [1, 0, "maybe", 1.0, None]
    if kind is int:
        return [1.0, "1", True, None]
    assert kind is float, spec
    return ["1.0", True, None, [1.0]]


# ----------------------------------------------------------------------------- the table itself


def test_table_is_consistent() -> None:
    assert len(SPECS) == len(PARAMETERS), "duplicate parameter names"
    for spec in PARAMETERS:
        assert type(spec.default) in (str, int, float, bool), spec.name
        assert spec.description.strip(), spec.name
        assert spec.choices is None or spec.range is None, spec.name
        if spec.choices is not None:
            assert type(spec.default) is str and spec.default in spec.choices, spec.name
        if spec.range is not None:
            assert type(spec.default) in (int, float) and spec.range[0] <= spec.default <= spec.range[1], spec.name


@pytest.mark.parametrize("spec", PARAMETERS, ids=IDS)
def test_default_is_valid(spec: ParamSpec) -> None:
    assert check_value(spec, spec.default) is None


@pytest.mark.parametrize("spec", PARAMETERS, ids=IDS)
def test_wrong_type_rejected(spec: ParamSpec) -> None:
    for value in wrong_type_values(spec):
        reason = check_value(spec, value)
        assert reason is not None, f"{spec.name} accepted {value!r}"
        assert f"'{spec.name}'" in reason and type(spec.default).__name__ in reason


@pytest.mark.parametrize("spec", [s for s in PARAMETERS if s.range is not None], ids=lambda s: s.name)
def test_range_inclusive_and_outside_rejected(spec: ParamSpec) -> None:
    assert spec.range is not None
    low, high = spec.range
    kind = type(spec.default)
    assert check_value(spec, kind(low)) is None
    assert check_value(spec, kind(high)) is None
    step = 1 if kind is int else max(abs(low), abs(high), 1.0) * 1e-6
    for value in (kind(low - step), kind(high + step)):
        reason = check_value(spec, value)
        assert reason is not None, f"{spec.name} accepted {value!r}"
        assert f"'{spec.name}'" in reason and "within" in reason


@pytest.mark.parametrize("spec", [s for s in PARAMETERS if s.choices is not None], ids=lambda s: s.name)
def test_choices(spec: ParamSpec) -> None:
    assert spec.choices is not None
    for choice in spec.choices:
        assert check_value(spec, choice) is None
    for bad in ("not-a-choice", "", spec.choices[0].upper() + "X"):
        reason = check_value(spec, bad)
        assert reason is not None and f"'{spec.name}'" in reason
        assert all(choice in reason for choice in spec.choices)


def test_specific_choices_and_ranges() -> None:
    assert check_value(SPECS["depth_encoding"], "16UC1") is None
    assert check_value(SPECS["depth_encoding"], "mono16") is not None
    assert check_value(SPECS["input_rectified"], "true") is None
    assert check_value(SPECS["backend"], "onnxruntime") is None
    assert check_value(SPECS["cloud_stride"], 0) is not None
    assert check_value(SPECS["cloud_stride"], 64) is None
    assert check_value(SPECS["output_scale"], 0.04) is not None
    assert check_value(SPECS["input_qos_depth"], 101) is not None
    assert check_value(SPECS["output_qos_depth"], 0) is not None
    assert check_value(SPECS["input_qos_reliability"], "system_default") is not None


def test_qos_defaults_follow_rep_2003() -> None:
    """Inputs best effort (match reliable and best-effort drivers), outputs reliable (match RViz2's reliable
    default and Nav2's best effort), keep-last 1 both."""
    assert (SPECS["input_qos_reliability"].default, SPECS["input_qos_depth"].default) == ("best_effort", 1)
    assert (SPECS["output_qos_reliability"].default, SPECS["output_qos_depth"].default) == ("reliable", 1)
    assert set(REMOVED_PARAMETERS) == {"qos_reliability", "qos_depth"}
    assert not set(REMOVED_PARAMETERS) & set(SPECS)
    assert "input_qos_reliability" in REMOVED_PARAMETERS["qos_reliability"]
    assert "output_qos_reliability" in REMOVED_PARAMETERS["qos_reliability"]


def test_true_and_false_accepted_as_booleans_or_strings() -> None:
    """ROS types `-p input_rectified:=true` (and YAML `input_rectified: true`) as a bool, `"true"` as a string."""
    spec = SPECS["input_rectified"]
    for given, expected in ((True, "true"), (False, "false"), ("true", "true"), ("False", "false"),
                            ("auto", "auto")):
        assert normalise(spec, given) == expected
        assert check_value(spec, given) is None
    assert check_value(spec, "maybe") is not None
    for name in ("cloud_color", "focal_rescale", "navigation_outputs", "autostart"):
        assert normalise(SPECS[name], "true") is True and normalise(SPECS[name], "FALSE") is False
        assert check_value(SPECS[name], "true") is None
    bool_or_choice = {s.name for s in PARAMETERS if accepts_bool(s)}
    assert "input_rectified" in bool_or_choice and "depth_encoding" not in bool_or_choice
    assert normalise(SPECS["depth_encoding"], True) is True  # not a true/false parameter: left to be refused


@pytest.mark.parametrize("spec", [s for s in PARAMETERS if type(s.default) is float], ids=lambda s: s.name)
def test_integer_accepted_for_float(spec: ParamSpec) -> None:
    # YAML `max_depth: 20` or `-p min_depth:=0` give integers; they are numbers all the same.
    assert spec.range is not None
    value = int(spec.range[1]) if spec.range[1] < 1e6 else 1
    if not spec.range[0] <= value <= spec.range[1]:
        value = int(spec.range[0]) + 1
    assert check_value(spec, value) is None
    assert check_value(spec, bool(value)) is not None  # but booleans are not numbers here


def test_float_not_accepted_for_int() -> None:
    assert check_value(SPECS["cloud_stride"], 2.0) is not None
    assert check_value(SPECS["num_threads"], 4) is None


# ----------------------------------------------------------------------------- validate (cross rules)


def test_validate_defaults() -> None:
    assert validate(defaults()) is None


def test_validate_reports_first_bad_value() -> None:
    values = defaults() | {"cloud_stride": 0}
    reason = validate(values)
    assert reason is not None and "'cloud_stride'" in reason


def test_validate_coerces_integers_for_floats() -> None:
    assert validate(defaults() | {"min_depth": 0, "max_depth": 20}) is None


@pytest.mark.parametrize(("low", "high", "ok"), [(0.1, 50.0, True), (5.0, 5.0, False), (10.0, 5.0, False),
                                                 (0.0, 0.001, True)])
def test_validate_min_below_max(low: float, high: float, ok: bool) -> None:
    reason = validate(defaults() | {"min_depth": low, "max_depth": high})
    if ok:
        assert reason is None
    else:
        assert reason is not None and "min_depth" in reason and "max_depth" in reason


@pytest.mark.parametrize(("low", "high", "ok"), [
    (0.0, 0.0, True),  # both automatic
    (2.0, 0.0, True),  # only one fixed: the other stays automatic
    (0.0, 2.0, True),
    (1.0, 4.0, True),
    (4.0, 4.0, False),
    (5.0, 4.0, False),
])
def test_validate_colored_range(low: float, high: float, ok: bool) -> None:
    reason = validate(defaults() | {"colored_min_depth": low, "colored_max_depth": high})
    if ok:
        assert reason is None
    else:
        assert reason is not None and "colored_min_depth" in reason and "colored_max_depth" in reason


@pytest.mark.parametrize("model", ["", "   "])
def test_validate_empty_model(model: str) -> None:
    reason = validate(defaults() | {"model": model})
    assert reason is not None and "'model'" in reason and "default" in reason


def test_pipeline_settings_from_values() -> None:
    values = defaults() | {"output_scale": 0.5, "min_depth": 1, "max_depth": 9, "disparity_scale": 2,
                           "disparity_shift": -0.5, "focal_rescale": False, "edge_filter": False}
    settings = pipeline_settings(values)
    assert settings == PipelineSettings(output_scale=0.5, min_depth=1.0, max_depth=9.0, disparity_scale=2.0,
                                        disparity_shift=-0.5, focal_rescale=False)
    assert all(type(getattr(settings, n)) is float for n in ("min_depth", "max_depth", "disparity_scale"))
    assert pipeline_settings(defaults()) == PipelineSettings(edge_filter=True)  # on in the node, off in the library


# ----------------------------------------------------------------------------- config/depth.yaml


def _config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    return data["/**"]["ros__parameters"]


def test_config_names_every_parameter() -> None:
    config = _config()
    assert set(config) == set(SPECS), (
        f"missing from depth.yaml: {sorted(set(SPECS) - set(config))}; "
        f"unknown in depth.yaml: {sorted(set(config) - set(SPECS))}")


@pytest.mark.parametrize("spec", PARAMETERS, ids=IDS)
def test_config_value_is_the_default(spec: ParamSpec) -> None:
    value = _config()[spec.name]
    assert value == spec.default and type(value) is type(spec.default), (
        f"depth.yaml {spec.name}: {value!r} ({type(value).__name__}) but the table says "
        f"{spec.default!r} ({type(spec.default).__name__})")


def test_config_is_valid() -> None:
    assert validate(dict(_config())) is None


# ----------------------------------------------------------------------------- TensorRT engine cache settings


def test_engine_parameters_are_startup_only_with_checked_values() -> None:
    for name in ("engine_cache_dir", "engine_precision"):
        assert SPECS[name].read_only, name
    assert SPECS["engine_precision"].choices == ("fp16", "fp32")
    assert check_value(SPECS["engine_precision"], "int8") is not None
    assert check_value(SPECS["engine_cache_dir"], "/var/cache/depth_ros") is None


def test_validate_engine_cache_dir(tmp_path: Path) -> None:
    assert validate(defaults() | {"engine_cache_dir": str(tmp_path)}) is None
    assert validate(defaults() | {"engine_cache_dir": str(tmp_path / "not" / "yet")}) is None  # created on build
    a_file = tmp_path / "engines"
    a_file.write_text("")
    reason = validate(defaults() | {"engine_cache_dir": str(a_file)})
    assert reason is not None and "'engine_cache_dir'" in reason and "not a directory" in reason
    reason = validate(defaults() | {"engine_cache_dir": f" {tmp_path}"})
    assert reason is not None and "'engine_cache_dir'" in reason and "blanks" in reason


def test_backend_options_carry_the_engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from depth_ros.backends import BackendOptions
    from depth_ros.backends.tensorrt_backend import engine_cache_dir
    from depth_ros.ros.parameters import backend_options

    options = backend_options(defaults() | {"engine_cache_dir": "~/engines", "engine_precision": "fp32",
                                            "num_threads": 3, "device": "cuda"})
    assert options == BackendOptions(num_threads=3, device="cuda", engine_cache_dir="~/engines",
                                     engine_precision="fp32")
    assert engine_cache_dir(options) == Path("~/engines").expanduser()
    # '' is $DEPTH_ROS_ENGINE_CACHE, read when the backend is made (the suite points it into its own tmp dir)
    monkeypatch.setenv("DEPTH_ROS_ENGINE_CACHE", str(tmp_path / "cache"))
    assert engine_cache_dir(backend_options(defaults())) == tmp_path / "cache"
    monkeypatch.delenv("DEPTH_ROS_ENGINE_CACHE")
    assert engine_cache_dir(backend_options(defaults())) == Path("~/.cache/depth_ros/engines").expanduser()
    assert backend_options(defaults()) == BackendOptions()
