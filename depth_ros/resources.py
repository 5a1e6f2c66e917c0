"""Where models live: resolving the node's 'model' parameter to a file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The embedded default model (see models/README.md for what it is and its limits).
DEFAULT_MODEL_FILE = "depth_ros_student_s.onnx"
PACKAGE = "depth_ros"


def share_dirs() -> list[Path]:
    """The package's share/ directories: colcon install, pip install, then the source checkout."""
    dirs: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH (pip install)
            pass
    except ImportError:
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE)
    dirs.append(Path(__file__).resolve().parent.parent)  # source checkout / editable install
    return dirs


def package_file(relative: str) -> Path | None:
    """A file installed to the package's share/ (e.g. 'config/depth.yaml'), or None."""
    for base in share_dirs():
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return None


def resolve_model_path(name: str) -> Path:
    """'default', a path (absolute or relative to the working directory), or a file in models/.

    Returns the first existing candidate, else the name as a path (loading then reports it missing).
    """
    name = os.path.expanduser(name.strip())
    if name == "default":
        name = DEFAULT_MODEL_FILE
    path = Path(name)
    if path.is_absolute() or path.is_file():
        return path
    found = package_file(f"models/{name}")
    return found if found is not None else path
