"""The launch file, the RViz config, the params file and the Fast DDS profile.

- The launch file's pure helpers (overrides, remappings, environment) always run; its
  LaunchDescription is checked where launch_ros is importable (a sourced ROS install).
- The invocation the launch file performs runs for real through the installed console script.
- The shipped Fast DDS profile is shown to deliver 1.2 MB best-effort images between processes.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import rclpy
import yaml
from oracles import camera_info, make_contract, rgb_image, save_oracle, textured_rgb
from rclpy.node import Node
from ros_harness import PARAMS_FILE, REPO, Client, depth_array, node_env, qos, start_node
from sensor_msgs.msg import CameraInfo, Image

from depth_ros.ros import dds
from depth_ros.ros.parameters import SPECS, check_value

LAUNCH_FILE = REPO / "launch" / "depth.launch.py"
RVIZ_FILE = REPO / "rviz" / "depth.rviz"
PROFILE_FILE = REPO / "config" / "fastdds_large_data.xml"
FASTDDS_NS = "{http://www.eprosima.com}"
EXPECTED_ARGUMENTS = {"model", "params_file", "namespace", "image", "camera_info", "backend", "image_transport",
                      "use_large_data_profile", "rviz", "log_level", "navigation", "autostart", "cameras"}


def load_launch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("depth_ros_depth_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def launch_module() -> ModuleType:
    return load_launch_module()


def defaults(module: ModuleType, **given: str) -> dict[str, str]:
    values = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    values.update(given)
    return values


# --------------------------------------------------------------------------- pure helpers


def test_launch_file_imports_without_launch_ros(launch_module: ModuleType) -> None:
    assert callable(launch_module.generate_launch_description)
    assert set(launch_module.ARGUMENTS) == EXPECTED_ARGUMENTS
    assert launch_module.ARGUMENTS["namespace"][0] == "camera"
    assert launch_module.ARGUMENTS["image"][0] == "color/image_raw"
    assert launch_module.ARGUMENTS["camera_info"][0] == "color/camera_info"
    assert launch_module.ARGUMENTS["use_large_data_profile"][0] == "true"
    assert launch_module.ARGUMENTS["rviz"][0] == "false"
    for name in ("model", "backend", "image_transport", "navigation", "autostart", "cameras"):
        assert launch_module.ARGUMENTS[name][0] == "", f"{name} must default to 'keep the params file's'"


def test_defaults_keep_the_params_file_and_remap_the_inputs(launch_module: ModuleType) -> None:
    parameters, remappings = launch_module.node_overrides(defaults(launch_module))
    assert parameters == []
    assert remappings == [("image", "color/image_raw"), ("camera_info", "color/camera_info")]


def test_given_arguments_become_parameter_overrides(launch_module: ModuleType) -> None:
    values = defaults(launch_module, model="/models/my model.onnx", backend="onnxruntime",
                      image_transport="compressed", image="/cam/left/image_rect", camera_info="left/info")
    parameters, remappings = launch_module.node_overrides(values)
    assert parameters == [{"model": "/models/my model.onnx", "backend": "onnxruntime",
                           "image_transport": "compressed"}]
    assert remappings == [("image", "/cam/left/image_rect"), ("camera_info", "left/info")]
    for name, value in parameters[0].items():  # every override is a real, valid node parameter
        assert check_value(SPECS[name], value) is None


def test_cameras_argument_becomes_the_cameras_parameter(launch_module: ModuleType) -> None:
    """cameras:=front,rear reaches the node as one string, which the node reads as the two camera names."""
    from depth_ros.ros.cameras import parse_cameras

    parameters, _ = launch_module.node_overrides(defaults(launch_module, cameras="front,rear"))
    assert parameters == [{"cameras": "front,rear"}]
    assert parse_cameras(parameters[0]["cameras"]) == ("front", "rear")


def test_navigation_argument_sets_the_boolean_parameter(launch_module: ModuleType) -> None:
    for text, expected in (("true", True), ("True", True), ("false", False)):
        parameters, _ = launch_module.node_overrides(defaults(launch_module, navigation=text))
        assert parameters == [{"navigation_outputs": expected}]
        assert check_value(SPECS["navigation_outputs"], parameters[0]["navigation_outputs"]) is None
    assert launch_module.node_overrides(defaults(launch_module, navigation=" "))[0] == []
    with pytest.raises(ValueError):
        launch_module.node_overrides(defaults(launch_module, navigation="maybe"))


def test_autostart_argument_sets_the_boolean_parameter(launch_module: ModuleType) -> None:
    for text, expected in (("false", False), ("False", False), ("true", True), ("0", False)):
        parameters, _ = launch_module.node_overrides(defaults(launch_module, autostart=text))
        assert parameters == [{"autostart": expected}]
        assert check_value(SPECS["autostart"], parameters[0]["autostart"]) is None
    assert launch_module.node_overrides(defaults(launch_module))[0] == []  # the params file's (true) decides


def test_blank_arguments_are_not_overrides(launch_module: ModuleType) -> None:
    values = defaults(launch_module, model="  ", backend="", image_transport="\t", image=" ", camera_info="")
    assert launch_module.node_overrides(values) == ([], [])
    parameters, _ = launch_module.node_overrides(defaults(launch_module, backend=" tensorrt "))
    assert parameters == [{"backend": "tensorrt"}]
    # Arguments that are not parameters never leak into the overrides.
    parameters, _ = launch_module.node_overrides(defaults(launch_module, rviz="true", log_level="debug"))
    assert parameters == []


def test_log_level_and_booleans(launch_module: ModuleType) -> None:
    assert launch_module.node_arguments(defaults(launch_module)) == ["--ros-args", "--log-level", "info"]
    assert launch_module.node_arguments(defaults(launch_module, log_level="debug"))[-1] == "debug"
    assert launch_module.node_arguments(defaults(launch_module, log_level="")) == []
    for text in ("true", "True", "1", "yes", "on"):
        assert launch_module.parse_bool(text) is True
    for text in ("false", "False", "0", "no", "off", ""):
        assert launch_module.parse_bool(text) is False
    with pytest.raises(ValueError):
        launch_module.parse_bool("maybe")


def test_large_data_profile_unless_the_user_set_one(launch_module: ModuleType) -> None:
    profile = "/share/depth_ros/config/fastdds_large_data.xml"
    on, off = defaults(launch_module), defaults(launch_module, use_large_data_profile="false")
    assert launch_module.profile_to_set(on, {}, profile) == profile
    assert launch_module.profile_to_set(on, {"FASTDDS_DEFAULT_PROFILES_FILE": ""}, profile) == profile
    assert launch_module.profile_to_set(on, {"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}, profile) is None
    assert launch_module.profile_to_set(off, {}, profile) is None


def test_launch_finds_its_installed_files(launch_module: ModuleType) -> None:
    share = launch_module.share_dir()
    for relative in (launch_module.PARAMS_FILE, launch_module.DDS_PROFILE, launch_module.RVIZ_CONFIG):
        assert (share / relative).is_file(), f"{share / relative} is missing"
    # setup.py installs these folders to share/depth_ros.
    setup = (REPO / "setup.py").read_text()
    for pattern in ('glob("launch/*.py")', 'glob("rviz/*.rviz")', 'glob("config/*.xml")'):
        assert pattern in setup


# --------------------------------------------------------------------------- with launch_ros


def _launch_ros() -> None:
    if importlib.util.find_spec("launch_ros") is None:
        reason = ("launch_ros is not installed (not on PyPI); source a ROS 2 install (Humble or later) "
                  "to test the LaunchDescription")
        print(f"SKIP: {reason}")
        pytest.skip(reason)


def _text(context: Any, value: Any) -> str:
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    if isinstance(value, str):
        return value
    return perform_substitutions(context, normalize_to_list_of_substitutions(value))


def _expand(arguments: dict[str, str]) -> tuple[Any, list[Any]]:
    """generate_launch_description() with ``arguments`` given: (context, actions of the OpaqueFunction)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_context import LaunchContext

    module = load_launch_module()
    description = module.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    actions: list[Any] = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)  # fills in the defaults not given
        elif isinstance(entity, OpaqueFunction):
            actions += entity.visit(context) or []
    return context, actions


def _nodes(context: Any, actions: list[Any], package: str, executable: str) -> list[Any]:
    from launch_ros.actions import Node as LaunchNode

    def field(node: Any, name: str) -> str:
        # node_package / node_executable properties; older launch_ros only has the private fields.
        value = getattr(node, f"node_{name}", None)
        if value is None:
            value = getattr(node, "_Node__package" if name == "package" else "_Node__node_executable")
        return _text(context, value)

    return [a for a in actions if isinstance(a, LaunchNode)
            and field(a, "package") == package and field(a, "executable") == executable]


def test_launch_description_declares_arguments_and_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    _launch_ros()
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable

    description = load_launch_module().generate_launch_description()
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == EXPECTED_ARGUMENTS

    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    context, actions = _expand({})
    assert context.launch_configurations["namespace"] == "camera"
    assert context.launch_configurations["params_file"].endswith("config/depth.yaml")
    assert len(_nodes(context, actions, "depth_ros", "depth_node")) == 1
    assert _nodes(context, actions, "rviz2", "rviz2") == []
    env = [a for a in actions if isinstance(a, SetEnvironmentVariable)]
    assert len(env) == 1 and _text(context, env[0].name) == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert _text(context, env[0].value).endswith("config/fastdds_large_data.xml")


def test_launch_description_options(monkeypatch: pytest.MonkeyPatch) -> None:
    _launch_ros()
    from launch.actions import SetEnvironmentVariable

    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/users/own/profile.xml")
    context, actions = _expand({"rviz": "true", "model": "x.onnx"})
    assert len(_nodes(context, actions, "depth_ros", "depth_node")) == 1
    assert len(_nodes(context, actions, "rviz2", "rviz2")) == 1
    assert not [a for a in actions if isinstance(a, SetEnvironmentVariable)], "the user's profile must win"
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    _, actions = _expand({"use_large_data_profile": "false"})
    assert not [a for a in actions if isinstance(a, SetEnvironmentVariable)]


# --------------------------------------------------------------------------- the console script


def console_script() -> Path:
    """The installed depth_node console script (pip / `make setup`: next to python; colcon: lib/depth_ros)."""
    candidates = [shutil.which("depth_node"), Path(sys.executable).parent / "depth_node",
                  Path(sys.prefix) / "lib" / "depth_ros" / "depth_node"]
    for candidate in candidates:
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    reason = "the depth_node console script is not installed (`make setup` installs it into .venv/bin)"
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def test_console_script_with_the_launch_files_invocation(ros_context: Node, tmp_path: Path) -> None:
    """What the launch file runs: params file, namespace, remapped inputs, a model override."""
    script = console_script()
    fx, width, height, depth_m = 525.0, 640, 480, 2.5
    contract = make_contract("canonical_inverse_depth", 48, 64)
    model = save_oracle(tmp_path, np.full((48, 64), (fx / width) / depth_m, np.float32), contract, (48, 64))
    process = start_node({"model": str(model)}, params_file=PARAMS_FILE, executable=[str(script)],
                         remaps={"image": "color/image_raw", "camera_info": "color/camera_info"})
    ns = process.namespace
    client = Client(ros_context, ns)
    # The node's inputs are at the remapped names: publish there instead of <ns>/image.
    ros_context.destroy_publisher(client.pub_image)
    ros_context.destroy_publisher(client.pub_info)
    client.pub_image = ros_context.create_publisher(Image, f"{ns}/color/image_raw", qos())
    client.pub_info = ros_context.create_publisher(CameraInfo, f"{ns}/color/camera_info", qos())
    try:
        client.wait_ready(process)
        assert ros_context.count_subscribers(f"{ns}/image") == 0, "the image remapping did not apply"
        assert ros_context.count_subscribers(f"{ns}/camera_info") == 0
        image = rgb_image(textured_rgb(height, width), frame_id="camera_color_optical_frame")
        info = camera_info(width, height, fx, fx, 319.5, 239.5, frame_id="camera_color_optical_frame")
        out = client.send(image, info, 7_000_000_123, wanted=("depth", "camera_info"))
        depth = depth_array(out.depth)
        assert depth.shape == (height, width) and out.depth.encoding == "32FC1"
        np.testing.assert_allclose(depth, depth_m, rtol=1e-5)
        assert out.depth.header.frame_id == "camera_color_optical_frame"
        assert (out.camera_info.width, out.camera_info.height) == (width, height)
    finally:
        client.close()
        code = process.stop()
    assert code == 0, f"depth_node exited with {code}:\n{process.output()}"


# --------------------------------------------------------------------------- config files


def test_params_file_is_valid() -> None:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    values = data["/**"]["ros__parameters"]
    assert set(values) <= set(SPECS), f"unknown parameters: {set(values) - set(SPECS)}"
    for name, value in values.items():
        assert check_value(SPECS[name], value) is None, check_value(SPECS[name], value)


def _udp_and_shm(root: ET.Element) -> tuple[ET.Element, ET.Element]:
    descriptors = root.findall(f"./{FASTDDS_NS}profiles/{FASTDDS_NS}transport_descriptors/"
                               f"{FASTDDS_NS}transport_descriptor")
    by_type = {d.findtext(f"{FASTDDS_NS}type"): d for d in descriptors}
    assert set(by_type) == {"SHM", "UDPv4"}, set(by_type)
    return by_type["UDPv4"], by_type["SHM"]


def test_fastdds_profile_is_valid() -> None:
    root = ET.parse(PROFILE_FILE).getroot()
    assert root.tag == f"{FASTDDS_NS}dds"
    udp, shm = _udp_and_shm(root)
    assert int(udp.findtext(f"{FASTDDS_NS}sendBufferSize", "0")) == 4 * 1024 * 1024
    assert int(udp.findtext(f"{FASTDDS_NS}receiveBufferSize", "0")) == 4 * 1024 * 1024
    assert int(shm.findtext(f"{FASTDDS_NS}segment_size", "0")) >= 32 * 1024 * 1024
    participant = root.find(f"./{FASTDDS_NS}profiles/{FASTDDS_NS}participant")
    assert participant is not None and participant.get("is_default_profile") == "true"
    rtps = participant.find(f"{FASTDDS_NS}rtps")
    assert rtps is not None
    assert rtps.findtext(f"{FASTDDS_NS}useBuiltinTransports", "").strip() == "false"
    used = [t.text for t in rtps.findall(f"./{FASTDDS_NS}userTransports/{FASTDDS_NS}transport_id")]
    assert sorted(used) == sorted([udp.findtext(f"{FASTDDS_NS}transport_id"),
                                   shm.findtext(f"{FASTDDS_NS}transport_id")])


def test_localhost_profile_adds_the_loopback_whitelist() -> None:
    path = dds.localhost_profile()
    try:
        udp, shm = _udp_and_shm(ET.parse(path).getroot())
        addresses = [a.text for a in udp.findall(f"./{FASTDDS_NS}interfaceWhiteList/{FASTDDS_NS}address")]
        assert addresses == ["127.0.0.1"]
        assert shm.find(f"{FASTDDS_NS}interfaceWhiteList") is None
    finally:
        path.unlink()


def test_rviz_config() -> None:
    config = yaml.safe_load(RVIZ_FILE.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"
    displays = {d["Topic"]["Value"]: d for d in manager["Displays"] if isinstance(d.get("Topic"), dict)}
    assert set(displays) == {"/camera/depth/colored", "/camera/color/image_raw", "/camera/points"}
    for display in displays.values():
        assert display["Topic"]["Reliability Policy"] == "Best Effort"
        assert display["Enabled"] is True
    assert displays["/camera/depth/colored"]["Class"] == "rviz_default_plugins/Image"
    assert displays["/camera/color/image_raw"]["Class"] == "rviz_default_plugins/Image"
    cloud = displays["/camera/points"]
    assert cloud["Class"] == "rviz_default_plugins/PointCloud2"
    assert (cloud["Style"], cloud["Size (Pixels)"], cloud["Color Transformer"], cloud["Axis"]) == \
        ("Points", 1, "AxisColor", "Z")
    view = manager["Views"]["Current"]
    assert view["Class"] == "rviz_default_plugins/Orbit"
    # The orbit camera sits at focal + distance * (cos y cos p, sin y cos p, sin p): behind the camera (z < 0).
    position_z = view["Focal Point"]["Z"] + view["Distance"] * np.sin(view["Pitch"])
    assert position_z < 0 < view["Focal Point"]["Z"]


# --------------------------------------------------------------------------- large best-effort messages

PUBLISHER = textwrap.dedent("""
    import array, sys, time
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    topic, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node("large_data_publisher")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                     durability=DurabilityPolicy.VOLATILE)
    pub = node.create_publisher(Image, topic, qos)
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if pub.get_subscription_count() == 0:
        sys.exit("no subscriber matched")
    time.sleep(1.0)  # let the subscriber's side of the match settle too
    msg = Image(height=480, width=640, encoding="32FC1", step=640 * 4, is_bigendian=0)
    msg.header.frame_id = "camera_color_optical_frame"
    msg.data = array.array("B", bytes(640 * 480 * 4))
    start = time.monotonic()
    for i in range(count):
        msg.header.stamp.sec = i
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
""")


def test_multi_megabyte_best_effort_images_arrive(ros_context: Node, tmp_path: Path) -> None:
    """DESIGN §8: with the shipped profile, 1.2 MB best-effort images at 10 Hz cross processes."""
    count, rate = 30, 10.0
    topic = f"/large_data_{uuid.uuid4().hex[:8]}"
    received: set[int] = set()
    sizes: set[int] = set()

    def on_image(msg: Image) -> None:
        received.add(msg.header.stamp.sec)
        sizes.add(len(msg.data))

    sub = ros_context.create_subscription(Image, topic, on_image, qos(reliable=False, depth=10))  # best effort
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    publisher = subprocess.Popen([sys.executable, str(script), topic, str(count), str(rate)], env=node_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60.0
        while publisher.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(ros_context, timeout_sec=0.01)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            rclpy.spin_once(ros_context, timeout_sec=0.01)
    finally:
        ros_context.destroy_subscription(sub)
        if publisher.poll() is None:
            publisher.kill()
        output = publisher.communicate()[0]
    print(f"large best-effort images received: {len(received)}/{count} (1.2 MB, {rate:g} Hz)")
    assert publisher.returncode == 0, output
    assert sizes <= {640 * 480 * 4}
    assert len(received) >= 27, f"only {len(received)}/{count} 1.2 MB best-effort images arrived"
