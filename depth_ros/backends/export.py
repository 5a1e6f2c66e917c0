"""torch model -> ONNX file with the depth_ros contract embedded (``depth-ros export``).

Opset 17 so that LayerNorm exports as one LayerNormalization op (TensorRT keeps it in FP32,
avoiding the FP16 overflow reported for DINOv2 ViTs, DESIGN.md §9). The graph is checked,
simplified (onnxslim when installed, else ONNX Runtime's offline basic optimisation), the
contract is stored in metadata_props, and ONNX Runtime's output is compared with PyTorch's.

The batch is fixed at 1 unless asked otherwise: ``batch=None`` names dim 0 "batch" on the input and every
output (ONNX Runtime and torch then run any batch in one pass, TensorRT a batch range), an int fixes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.core.contract import ModelContract

INPUT_NAME = "image"
OUTPUT_NAME = "depth"
OPSET = 17
BATCH_DIM = "batch"  # the name of a dynamic batch dimension


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_size: tuple[int, int] | None  # None: dynamic
    simplifier: str
    max_abs_diff: float  # ONNX Runtime vs PyTorch on a random image
    max_abs_output: float
    mean_abs_diff: float
    batch: int | None = 1  # None: dynamic

    def summary(self) -> str:
        size = "dynamic" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]} (HxW)"
        batch = "dynamic" if self.batch is None else str(self.batch)
        rel = self.max_abs_diff / self.max_abs_output if self.max_abs_output > 0 else float("nan")
        return (f"wrote {self.path} (input {size}, batch {batch}, opset {OPSET}, simplified with {self.simplifier}); "
                f"ONNX Runtime vs PyTorch: max |diff| {self.max_abs_diff:.3g} (relative {rel:.3g}), "
                f"mean |diff| {self.mean_abs_diff:.3g}")


def size_for_camera(width: int, height: int, short_side: int = 518, multiple: int = 14) -> tuple[int, int]:
    """The official Depth Anything input size for a camera: shorter side ``short_side``, aspect kept,
    each side rounded to a multiple of 14 (never below the target). Returns (height, width)."""
    from depth_ros.core.preprocess import _round_to_multiple

    scale = short_side / min(width, height)
    return (_round_to_multiple(height * scale, multiple, short_side),
            _round_to_multiple(width * scale, multiple, short_side))


def _simplify(path: Path) -> str:
    import onnx

    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        model = onnxslim.slim(onnx.load(str(path)))
        onnx.save(model, str(path))
        return "onnxslim"
    # Fallback: ONNX Runtime folds constants and fuses nodes offline and writes the result.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return "onnxruntime basic optimisation"


def _name_batch_dims(proto: Any) -> None:
    """Dim 0 of every graph output that is not a fixed number becomes "batch": the exporter names only the outputs
    it was given names for, and simplifiers may rename the rest."""
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) > 0 and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def export_onnx(model: Any, contract: ModelContract, path: str | Path, input_size: tuple[int, int] | None,
                simplify: bool = True, check_size: tuple[int, int] | None = None, seed: int = 0,
                batch: int | None = 1) -> ExportReport:
    """Export ``model`` ((N,3,H,W) -> (N,1,H,W)) to ``path``.

    ``input_size`` (height, width) fixes the input; None exports dynamic height/width (the contract's
    size is then the preprocessing target). ``check_size`` is where ORT and torch are compared
    (default: the input size, or the contract's size for dynamic models). ``batch`` fixes the batch (default 1);
    None makes it dynamic (dim 0 "batch" on the input and every output), traced at 2 and checked at 3 images so
    that a graph tied to one batch fails here.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from depth_ros.backends.graph_models import set_contract

    if input_size is None and not getattr(model, "supports_dynamic_input", True):
        raise ValueError(f"{type(model).__name__} cannot be exported with a dynamic input size: give a fixed "
                         "--height/--width (multiples of 14) chosen for the camera's aspect ratio")
    if batch is not None and batch < 1:
        raise ValueError(f"the batch must be a positive number or dynamic, got {batch}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    height, width = input_size or (contract.input.height, contract.input.width)
    # A dynamic batch is traced at 2: an example of 1 lets the tracer treat the batch as a broadcastable 1.
    example = torch.randn(batch or 2, 3, height, width, generator=torch.Generator().manual_seed(seed))
    axes: dict[int, str] = {} if batch is not None else {0: BATCH_DIM}
    if input_size is None:
        axes.update({2: "height", 3: "width"})
    dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: dict(axes)} if axes else None
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamic_axes=dynamic_axes, dynamo=False, do_constant_folding=True)
    simplifier = _simplify(path) if simplify else "none"
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    if batch is None:
        _name_batch_dims(proto)
    set_contract(proto, contract)
    onnx.save(proto, str(path))

    check_h, check_w = check_size or (height, width)
    probe = torch.randn(batch or 3, 3, check_h, check_w, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected = model(probe).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: probe.numpy()})[0]
    if got.shape != expected.shape:
        raise RuntimeError(f"exported model gives shape {got.shape}, PyTorch {expected.shape}")
    diff = np.abs(got.astype(np.float64) - expected)
    report = ExportReport(path, input_size, simplifier, float(diff.max()), float(np.abs(expected).max()),
                          float(diff.mean()), batch)
    if not math.isfinite(report.max_abs_diff):
        raise RuntimeError(f"exported model {path} gives non-finite output")
    return report
