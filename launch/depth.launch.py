"""Start depth_node (and optionally RViz) with the installed params file.

    ros2 launch depth_ros depth.launch.py
    ros2 launch depth_ros depth.launch.py namespace:=camera image:=color/image_raw model:=my_model.onnx
    ros2 launch depth_ros depth.launch.py rviz:=true
    ros2 launch depth_ros depth.launch.py navigation:=true   # + /camera/scan, /camera/points_filtered
    ros2 launch depth_ros depth.launch.py autostart:=false   # managed: wait for a lifecycle manager
    ros2 launch depth_ros depth.launch.py cameras:=front,rear  # one node, one model, two cameras

Topics (with the defaults, namespace 'camera'): the node subscribes /camera/color/image_raw and
/camera/color/camera_info and publishes /camera/depth, /camera/depth/camera_info, /camera/points
and /camera/depth/colored (with navigation:=true also /camera/scan and /camera/points_filtered,
for Nav2: config/nav2_costmap_depth.yaml). `image` and `camera_info` are remapped relative to
`namespace` (give an absolute name, starting with '/', to point outside it).

With `cameras:=front,rear` one node serves both cameras with one model: /camera/front/image and
/camera/front/camera_info in, /camera/front/depth, /camera/front/points, ... out (and the same for
rear); remap them per camera in your own launch file (front/image:=/front_cam/color/image_raw).

`use_large_data_profile` (default true) sets FASTDDS_DEFAULT_PROFILES_FILE to the shipped
config/fastdds_large_data.xml for the processes started here, unless it is already set: without
it Fast DDS drops almost every multi-megabyte best-effort message (depth images, point clouds).
Subscribers in other processes (RViz started elsewhere, your own nodes) need the same variable.

The launch/launch_ros imports live inside the functions that need them, so the pure helpers
(`node_overrides`, ...) can be imported and tested without a ROS install.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGE = "depth_ros"
EXECUTABLE = "depth_node"
PARAMS_FILE = "config/depth.yaml"
DDS_PROFILE = "config/fastdds_large_data.xml"
RVIZ_CONFIG = "rviz/depth.rviz"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"

# Launch arguments that override the params file only when given (non-empty).
PARAMETER_ARGUMENTS = ("model", "backend", "image_transport", "cameras")
# Launch arguments that are remapping targets of the node's input topics.
REMAP_ARGUMENTS = ("image", "camera_info")

# name -> (default, description); params_file's default (the installed file) is filled in at launch.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": ("", "depth_node parameters (YAML); default: the installed config/depth.yaml"),
    "model": ("", "ONNX model (path, or file name in the package's models/); '' keeps the params file's"),
    "backend": ("", "auto | onnxruntime | tensorrt | torch; '' keeps the params file's"),
    "image_transport": ("", "raw | compressed; '' keeps the params file's"),
    "cameras": ("", "cameras served by the one node, e.g. front,rear (topics front/image, front/depth, ...); "
                "'' keeps the params file's (one camera)"),
    "navigation": ("", "true: also publish 'scan' and 'points_filtered' for Nav2 (parameter navigation_outputs); "
                   "'' keeps the params file's"),
    "autostart": ("", "false: start unconfigured and wait for a lifecycle manager (Nav2's lifecycle_manager, "
                  "ros2 lifecycle set); '' keeps the params file's (true: configure and activate at once)"),
    "namespace": ("camera", "namespace of the node and of its topics"),
    "image": ("color/image_raw", "input image topic (relative to the namespace unless it starts with '/')"),
    "camera_info": ("color/camera_info", "input CameraInfo topic (relative to the namespace unless absolute)"),
    "use_large_data_profile": ("true", "set FASTDDS_DEFAULT_PROFILES_FILE to the shipped large-data Fast DDS "
                               "profile (unless it is already set)"),
    "rviz": ("false", "also start rviz2 with the package's rviz/depth.rviz"),
    "log_level": ("info", "debug | info | warn | error | fatal"),
}

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def parse_bool(value: str) -> bool:
    """A launch argument's truth value ('true'/'false', '1'/'0', 'yes'/'no', 'on'/'off')."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def node_overrides(values: Mapping[str, str]) -> tuple[list[dict[str, str | bool]], list[tuple[str, str]]]:
    """Launch-argument values -> (parameter overrides, remappings) for depth_node.

    Parameter overrides: a list holding one dict of the parameter arguments that were given
    (non-blank), or an empty list when none were (the params file alone decides); `navigation`
    becomes the boolean parameter navigation_outputs, `autostart` the boolean parameter autostart.
    Remappings: ('image', target) and ('camera_info', target) for each non-blank target.
    """
    given: dict[str, str | bool] = {name: values[name].strip() for name in PARAMETER_ARGUMENTS
                                    if values.get(name, "").strip()}
    if values.get("navigation", "").strip():
        given["navigation_outputs"] = parse_bool(values["navigation"])
    if values.get("autostart", "").strip():
        given["autostart"] = parse_bool(values["autostart"])
    remappings = [(name, values[name].strip()) for name in REMAP_ARGUMENTS if values.get(name, "").strip()]
    return ([given] if given else []), remappings


def node_arguments(values: Mapping[str, str]) -> list[str]:
    """Extra command-line arguments of depth_node (the log level)."""
    level = values.get("log_level", "").strip()
    return ["--ros-args", "--log-level", level] if level else []


def profile_to_set(values: Mapping[str, str], environment: Mapping[str, str], profile: str) -> str | None:
    """The value to give FASTDDS_DEFAULT_PROFILES_FILE, or None to leave the environment alone."""
    if not parse_bool(values.get("use_large_data_profile", "true")):
        return None
    if environment.get(PROFILE_VARIABLE, "").strip():
        return None  # the user's own profile wins
    return profile


def share_dir() -> Path:
    """The package's installed share directory (or, run from a source checkout, the checkout)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, OSError, ValueError):  # not installed: next to this file
        here = Path(__file__).resolve().parent.parent
        if (here / PARAMS_FILE).is_file():
            return here
        raise


def _launch_setup(context: Any) -> list[Any]:
    """OpaqueFunction body: the actions for the resolved launch-argument values."""
    from launch.actions import SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = share_dir()
    params_file = values["params_file"].strip() or str(share / PARAMS_FILE)
    overrides, remappings = node_overrides(values)
    # value_type=str: launch would otherwise YAML-parse the strings ('off' -> False, '1' -> 1).
    parameters: list[Any] = [params_file]
    parameters += [{name: value if isinstance(value, bool) else ParameterValue(value, value_type=str)
                    for name, value in group.items()} for group in overrides]

    actions: list[Any] = []
    environment = getattr(context, "environment", os.environ)  # Humble+: the launch's own environment
    profile = profile_to_set(values, environment, str(share / DDS_PROFILE))
    if profile is not None:
        actions.append(SetEnvironmentVariable(PROFILE_VARIABLE, profile))
    actions.append(Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name="depth_node",
        namespace=values["namespace"].strip(),
        parameters=parameters,
        remappings=remappings,
        arguments=node_arguments(values),
        output="screen",
        emulate_tty=True,
    ))
    if parse_bool(values["rviz"]):
        actions.append(Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", str(share / RVIZ_CONFIG)],
            output="screen",
        ))
    return actions


def generate_launch_description() -> Any:
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description import LaunchDescription

    share = share_dir()
    defaults = dict(ARGUMENTS)
    defaults["params_file"] = (str(share / PARAMS_FILE), ARGUMENTS["params_file"][1])
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in defaults.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_setup)])
