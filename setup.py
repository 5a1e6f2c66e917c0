"""ament_python package definition for depth_ros (also installable with pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.md")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/data", ["data/README.md"]),
        (f"share/{PACKAGE}/data/realsense_d435", glob("data/realsense_d435/*.*")),
        (f"share/{PACKAGE}/data/realsense_d435/d435_rosbag2", glob("data/realsense_d435/d435_rosbag2/*")),
        (f"share/{PACKAGE}/data/tum_fr2_desk", glob("data/tum_fr2_desk/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="depth_ros maintainers",
    maintainer_email="depth_ros@example.com",
    description="Metric monocular depth and point clouds for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "depth_node = depth_ros.ros.node:main",
            "depth-ros = depth_ros.cli:main",
        ],
    },
)
