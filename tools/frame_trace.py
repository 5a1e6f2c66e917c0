"""How one frame travels through depth_ros's files: a call/return trace of one FrameProcessor.process().

The script builds a FrameProcessor the way `depth-ros bench` and `depth-ros bag process` do (every parameter
at its table default, except those named below), gives it a CameraInfo, runs one warm-up frame (first-touch
allocations, the geometry cache, ONNX Runtime's / torch's first run, the cloud buffer), then traces ONE more
call of ``FrameProcessor.process(msg, emit)`` with ``sys.setprofile``. Only Python-level 'call' and 'return'
events are kept (C calls -- 'c_call', 'c_return', 'c_exception' -- are ignored), and of those only the ones
whose code object's file lies inside the depth_ros package directory (numpy, torch, rclpy, ... drop out;
their callbacks into depth_ros stay in).

From the resulting sequence of files (one per event, in order):

- stays: the number of maximal runs of consecutive events in the same file -- how often the frame enters a
  file and stays there before moving on;
- files: the number of distinct files touched;
- returns into a file already left: the runs, after the first, whose file already appeared in an earlier run
  -- how often control comes back to a file it had left (stays - files when every file is entered from the
  start, i.e. returns = stays - files always holds).

Two paths are measured:

- host: ``DepthEstimator.from_path(<embedded default model>, backend="onnxruntime")``: the numpy/cv2 pipeline;
- device: the torch backend on the CPU (a random-weight Depth Anything V2 ViT-S checkpoint written to a
  temporary directory, as the tests make one) running the torch (device) pipeline. By default the network's
  own forward (depth_ros/nets/) is traced too; ``--skip-nets`` leaves it out, which counts only the pipeline.

The message is a real sensor_msgs/Image (rgb8, 640x480: data/realsense_d435/color.png when it is there, else
a random image) with a matching CameraInfo (plumb_bob, zero distortion); outputs are the default Wanted()
(depth, colored, points); ``emit`` only collects them.

Works on both package layouts (depth_ros.frame_processor / parameters / models / camera, and the restructured
depth_ros.ros.frame_processor / ros.parameters / resources / core.camera).

    python tools/frame_trace.py [--path host|device|both] [--json] [--cloud-color] [--skip-nets]
"""

from __future__ import annotations

import os

# No DDS is used (FrameProcessor only builds messages), but keep anything rclpy might start on this host.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")
os.environ.setdefault("ROS_DOMAIN_ID", "97")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType, ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

import depth_ros  # noqa: E402

PACKAGE_DIR = Path(depth_ros.__file__).resolve().parent


def _module(*names: str) -> ModuleType:
    """The first of ``names`` that imports from THIS depth_ros package (the new layout's name first).

    A module found elsewhere counts as missing: an editable install of another checkout registers a finder
    that would otherwise serve ``depth_ros.ros.*`` from that checkout when this one has no such module.
    """
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if Path(module.__file__ or "").resolve().is_relative_to(PACKAGE_DIR):
            return module
    raise ImportError(f"none of {names} is in {PACKAGE_DIR}")


try:
    _frame_processor = _module("depth_ros.ros.frame_processor")
except ImportError:
    _frame_processor = _module("depth_ros.frame_processor")
try:
    _parameters = _module("depth_ros.ros.parameters")
except ImportError:
    _parameters = _module("depth_ros.parameters")
try:
    _resources = _module("depth_ros.resources")
except ImportError:
    _resources = _module("depth_ros.models")
_backends = _module("depth_ros.backends")
_pipeline = _module("depth_ros.pipeline")

FrameProcessor = _frame_processor.FrameProcessor
Wanted = _frame_processor.Wanted
PARAMETERS = _parameters.PARAMETERS
validate = _parameters.validate
resolve_model_path = _resources.resolve_model_path
BackendOptions = _backends.BackendOptions
DepthEstimator = _pipeline.DepthEstimator

REPO_DIR = PACKAGE_DIR.parent
SAMPLE_IMAGE = REPO_DIR / "data" / "realsense_d435" / "color.png"
WIDTH, HEIGHT = 640, 480


# ----------------------------------------------------------------------------- the trace


@dataclass
class Run:
    """Consecutive events (or control locations) in one file."""

    file: str  # relative to the package directory
    entered_by: str  # 'call' | 'return': the event that brought the trace into this run
    functions: list[str] = field(default_factory=list)  # distinct, in order of first appearance
    events: int = 0


# One traced step: (file relative to the package, function name, 'call' | 'return').
Step = tuple[str, str, str]


@dataclass
class Trace:
    steps: list[Step]
    runs: list[Run]

    @property
    def stays(self) -> int:
        return len(self.runs)

    @property
    def files(self) -> int:
        return len({run.file for run in self.runs})

    def _reentries(self) -> list[Run]:
        seen: set[str] = set()
        again: list[Run] = []
        for run in self.runs:
            if run.file in seen:
                again.append(run)
            seen.add(run.file)
        return again

    @property
    def returns(self) -> int:
        """Runs after the first whose file already appeared in an earlier run (always stays - files)."""
        return len(self._reentries())

    @property
    def returns_by_return(self) -> int:
        """Of those, the runs entered by a 'return' event (control coming back to a caller's file)."""
        return sum(run.entered_by == "return" for run in self._reentries())

    def summary(self) -> dict[str, Any]:
        return {"stays": self.stays, "files": self.files, "returns_into_file_already_left": self.returns,
                "returns_by_return_event": self.returns_by_return, "steps": len(self.steps),
                "runs": [{"file": run.file, "entered_by": run.entered_by, "functions": run.functions,
                          "events": run.events} for run in self.runs]}


def group_runs(steps: list[Step]) -> list[Run]:
    runs: list[Run] = []
    for file, function, event in steps:
        if not runs or runs[-1].file != file:
            runs.append(Run(file, event))
        run = runs[-1]
        run.events += 1
        if function not in run.functions:
            run.functions.append(function)
    return runs


def trace_call(call: Callable[[], Any], method: str = "events", scope: str = "all",
               skip: tuple[Path, ...] = ()) -> Trace:
    """Run ``call`` under sys.setprofile; keep Python 'call'/'return' events that concern the package.

    method 'events': each event's own code file (a return is in the file of the function returning);
    method 'control': where control is after each event (a call: the callee's file; a return: the caller's),
    so A calling B twice reads A B A B A instead of A B A.
    scope 'all': every file under the package; 'top': only the package's top-level modules (no subpackages).
    Steps outside the package (or skipped) are dropped without breaking a run.
    """
    steps: list[Step] = []
    relative: dict[str, str | None] = {}  # co_filename -> path relative to the package, None = not counted

    def where(filename: str) -> str | None:
        if filename not in relative:
            path = Path(filename).resolve()
            inside = (path.is_relative_to(PACKAGE_DIR) and not any(path.is_relative_to(s) for s in skip)
                      and (scope == "all" or path.parent == PACKAGE_DIR))
            relative[filename] = path.relative_to(PACKAGE_DIR).as_posix() if inside else None
        return relative[filename]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" and event != "return":
            return  # c_call, c_return, c_exception
        if method == "control" and event == "return":
            caller = frame.f_back
            if caller is None:
                return
            code = caller.f_code
        else:
            code = frame.f_code
        file = where(code.co_filename)
        if file is not None:
            steps.append((file, getattr(code, "co_qualname", code.co_name), event))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return Trace(steps, group_runs(steps))


# ----------------------------------------------------------------------------- the frame


def rgb_frame() -> np.ndarray:
    try:
        import cv2

        bgr = cv2.imread(str(SAMPLE_IMAGE), cv2.IMREAD_COLOR)
    except ImportError:
        bgr = None
    if bgr is not None and bgr.shape[:2] == (HEIGHT, WIDTH):
        return np.ascontiguousarray(bgr[:, :, ::-1])
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def messages() -> tuple[Image, CameraInfo]:
    """An rgb8 640x480 Image and its CameraInfo (RealSense D435-like intrinsics, no distortion)."""
    rgb = rgb_frame()
    image = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3, is_bigendian=False)
    image.header.frame_id = "camera_color_optical_frame"
    image.header.stamp.sec = 1
    image.data = rgb.tobytes()
    fx, fy, cx, cy = 615.0, 612.0, 322.5, 241.25
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
    info.header = image.header
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return image, info


def parameter_values(model: Path, backend: str, cloud_color: bool) -> dict[str, Any]:
    """The table defaults (as bench / bag process start from) with this model; validated."""
    values: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
    values.update(model=str(model), backend=backend, cloud_color=cloud_color)
    reason = validate(values)
    if reason is not None:
        raise SystemExit(f"parameters rejected: {reason}")
    return values


def random_dav2_checkpoint(path: Path) -> Path:
    """The tests' random-weight Depth Anything V2 ViT-S checkpoint (tests/oracles.py), for the torch backend."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from oracles import random_dav2_checkpoint as make

    return make(path)


@dataclass(frozen=True)
class Options:
    method: str = "events"  # events | control (trace_call)
    scope: str = "all"  # all | top (trace_call)
    cloud_color: bool = False
    skip_nets: bool = False  # device path: leave depth_ros/nets/ (the network's forward) out


def measure(estimator: Any, model: Path, backend: str, options: Options,
            skip: tuple[Path, ...]) -> tuple[Trace, list[str]]:
    processor = FrameProcessor(estimator, parameter_values(model, backend, options.cloud_color))
    image, info = messages()
    processor.camera_info(info)
    emitted: list[tuple[str, Any]] = []

    def emit(kind: str, msg: Any) -> None:
        emitted.append((kind, msg))

    processor.process(image, emit)  # warm-up
    emitted.clear()
    trace = trace_call(lambda: processor.process(image, emit), options.method, options.scope, skip)
    return trace, [kind for kind, _ in emitted]


def host_path(options: Options) -> tuple[Trace, list[str], dict[str, Any]]:
    model = resolve_model_path("default")
    own = REPO_DIR / "models" / model.name  # this checkout's copy, when another install's share/ was found first
    model = own if own.is_file() else model
    estimator = DepthEstimator.from_path(model, backend="onnxruntime")
    assert not estimator.uses_device_pipeline
    trace, emitted = measure(estimator, model, "onnxruntime", options, ())
    return trace, emitted, {"model": str(model), "backend": estimator.backend.name, "device_pipeline": False}


def device_path(options: Options) -> tuple[Trace, list[str], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        model = random_dav2_checkpoint(Path(tmp) / "dav2_vits_random.pth")
        estimator = DepthEstimator.from_path(model, backend="torch", options=BackendOptions(device="cpu"))
    if not estimator.uses_device_pipeline:
        raise SystemExit("the torch backend did not select the device (torch) pipeline")
    skip = (PACKAGE_DIR / "nets",) if options.skip_nets else ()
    trace, emitted = measure(estimator, model, "torch", options, skip)
    return trace, emitted, {"model": "random Depth Anything V2 ViT-S checkpoint (.pth)",
                            "backend": estimator.backend.name, "device": estimator.backend.device,
                            "device_pipeline": True, "nets_traced": not options.skip_nets}


# ----------------------------------------------------------------------------- output


def print_trace(name: str, trace: Trace, emitted: list[str], about: dict[str, Any]) -> None:
    print(f"\n== {name} path: {', '.join(f'{k}={v}' for k, v in about.items())}")
    print(f"   emitted: {', '.join(emitted)}; {len(trace.steps)} traced steps")
    print(f"   stays: {trace.stays}   files: {trace.files}   returns into a file already left: {trace.returns}"
          f"   (entered by a return event: {trace.returns_by_return})")
    seen: set[str] = set()
    for i, run in enumerate(trace.runs, 1):
        mark = "<-" if run.file in seen else "  "
        seen.add(run.file)
        print(f"   {i:3d} {mark} {run.entered_by:<6} {run.file:<32} {' '.join(run.functions)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--path", choices=("host", "device", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print one machine-readable JSON summary instead")
    parser.add_argument("--method", choices=("events", "control"), default="events",
                        help="events: each event's own file (default); control: where control is after each event")
    parser.add_argument("--scope", choices=("all", "top"), default="all",
                        help="all: every file under the package (default); top: top-level modules only")
    parser.add_argument("--cloud-color", action="store_true", help="cloud_color:=true (default: the table's, false)")
    parser.add_argument("--skip-nets", action="store_true",
                        help="device path: leave the network's forward (depth_ros/nets/) out of the trace")
    args = parser.parse_args(argv)
    options = Options(args.method, args.scope, args.cloud_color, args.skip_nets)

    results: dict[str, Any] = {"package": str(PACKAGE_DIR), "options": asdict(options), "paths": {}}
    paths: list[tuple[str, Callable[[Options], tuple[Trace, list[str], dict[str, Any]]]]] = []
    if args.path in ("host", "both"):
        paths.append(("host", host_path))
    if args.path in ("device", "both"):
        paths.append(("device", device_path))
    if not args.json:
        print(f"package: {PACKAGE_DIR}; {', '.join(f'{k}={v}' for k, v in asdict(options).items())}")
    for name, run in paths:
        trace, emitted, about = run(options)
        results["paths"][name] = {**about, "emitted": emitted, **trace.summary()}
        if not args.json:
            print_trace(name, trace, emitted, about)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
