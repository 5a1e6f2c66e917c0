"""The package builds with `colcon build` in a ROS 2 workspace and installs where ROS tools look."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _colcon() -> str:
    found = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not Path(found).exists():
        pytest.skip("colcon is not installed (make setup installs colcon-common-extensions into .venv)")
    return found


def test_colcon_build_installs_package(tmp_path: Path) -> None:
    colcon = _colcon()
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    src = tmp_path / "ws" / "src" / "depth_ros"
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    ws = tmp_path / "ws"
    result = subprocess.run([colcon, "build", "--packages-select", "depth_ros"], cwd=ws,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    install = ws / "install" / "depth_ros"
    # `ros2 run depth_ros depth_node` looks in lib/<package>/.
    for script in ("depth_node", "depth-ros"):
        assert os.access(install / "lib" / "depth_ros" / script, os.X_OK), script
    share = install / "share" / "depth_ros"
    for name in ("package.xml", "launch/depth.launch.py", "config/depth.yaml", "config/fastdds_large_data.xml",
                 "models/depth_ros_student_s.onnx", "rviz/depth.rviz",
                 "data/realsense_d435/d435_rosbag2/metadata.yaml"):
        assert (share / name).is_file(), name
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "depth_ros").is_file()

    # The installed package finds its share/ through the ament index (as with a sourced workspace).
    site = next((install / "lib").glob("python3*/site-packages"))
    env = dict(os.environ, AMENT_PREFIX_PATH=str(install), PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", "import depth_ros, depth_ros.resources as m; "
                            "print(depth_ros.__file__); print(m.resolve_model_path('default'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    module_file, model = probe.stdout.split()
    assert Path(module_file).is_relative_to(install)
    assert Path(model) == share / "models" / "depth_ros_student_s.onnx"
