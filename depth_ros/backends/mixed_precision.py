"""FP32 ONNX -> mixed-precision FP16 ONNX for a strongly typed TensorRT build (10.x and 11.x alike).

TensorRT 11 removed weakly typed precision control (BuilderFlag.FP16, precision constraints): the
precision must be in the ONNX. NVIDIA's converter for this is ModelOpt AutoCast. It keeps nodes in
FP32 whose reference activations exceed FP16's safe range; normalisation, softmax and reductions
are kept in FP32 here by op type as well (LayerNorm after attention overflows in FP16 in DINOv2 ViTs,
DESIGN.md §9), and the model's inputs and outputs stay FP32. AutoCast runs ONNX Runtime on the CPU
for its reference pass, so the conversion itself needs no GPU and is tested on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depth_ros.backends.base import ModelLoadError

# Op types that compute in FP32 in every FP16 build.
FP32_OP_TYPES = (
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "Pow", "Sqrt",
)

MODELOPT_INSTALL = ("pip install --no-deps nvidia-modelopt onnx-graphsurgeon polygraphy onnxscript onnx-ir lief "
                    "tqdm nvidia-ml-py ml_dtypes")


def modelopt_version() -> str | None:
    """The installed ModelOpt version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-modelopt")
    except PackageNotFoundError:
        return None


def convert_to_fp16(source: Path, target: Path, calibration: dict[str, np.ndarray] | None = None) -> None:
    """Write the mixed-precision FP16 version of ``source`` to ``target`` (FP32 I/O, metadata kept).

    ``calibration``: input name -> a realistic input (a preprocessed image): AutoCast's reference run
    decides which nodes exceed FP16's range from it (its default is uniform noise in [-1, 1]).
    """
    import onnx

    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:
        raise ModelLoadError(
            f"engine_precision 'fp16' converts the ONNX to mixed precision with NVIDIA ModelOpt, which is not "
            f"importable here ({exc}). Install it without its dependencies (they would replace your torch and "
            f"onnxruntime): {MODELOPT_INSTALL}; or set engine_precision to 'fp32'"
        ) from exc
    calibration_path: str | None = None
    if calibration is not None:
        calibration_path = str(target.with_suffix(".calibration.npz"))
        arrays: dict[str, Any] = dict(calibration)  # numpy's stubs type **kwds as its own keyword arguments
        np.savez(calibration_path, **arrays)
    try:
        model = convert_to_mixed_precision(
            onnx_path=str(source), low_precision_type="fp16", keep_io_types=True,
            providers=["cpu"],  # the reference pass: ONNX Runtime on the CPU (a fresh list: the default is shared)
            op_types_to_exclude=list(FP32_OP_TYPES), calibration_data=calibration_path,
        )
    except Exception as exc:  # AutoCast raises whatever its graph passes raise
        raise ModelLoadError(f"ModelOpt AutoCast could not convert {source} to FP16: {exc}; set "
                             "engine_precision to 'fp32'") from exc
    finally:
        if calibration_path is not None:
            Path(calibration_path).unlink(missing_ok=True)
    # AutoCast's graph round trip drops metadata_props, where the model contract lives.
    source_meta = onnx.load(str(source), load_external_data=False).metadata_props
    del model.metadata_props[:]
    model.metadata_props.extend(source_meta)
    large = model.ByteSize() > 1_900_000_000  # protobuf's 2 GiB limit: ViT-L at FP16 is below, stay safe
    onnx.save(model, str(target), save_as_external_data=large,
              location=target.name + ".data" if large else None)
