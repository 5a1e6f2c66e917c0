"""PyTorch backend: eager fp32/fp16 on CPU or CUDA — the reference for 'depth-ros verify' and a fallback.

The model is a Depth Anything V2 checkpoint (official .pth, or a Hugging Face directory's
safetensors file); its contract comes from the network definition, with a dynamic input size
(shorter side 518, sides multiples of 14: the official preprocessing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from depth_ros.backends.base import MAX_DYNAMIC_BATCH, BackendOptions, ModelLoadError, register_backend

if TYPE_CHECKING:
    import torch


def _probe() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return f"torch is not installed ({exc}); pip install torch"
    return None


class TorchBackend:
    name = "torch"
    fixed_input_size: tuple[int, int] | None = None
    output_count = 1  # Depth Anything V2: the relative disparity
    max_batch = MAX_DYNAMIC_BATCH  # an eager module runs any batch in one forward pass

    def __init__(self, path: Path, options: BackendOptions, half: bool = False) -> None:
        import torch

        from depth_ros.core.contract import METADATA_KEY, ModelContract
        from depth_ros.nets.checkpoints import CheckpointError, load_depth_anything_v2

        if path.suffix == ".onnx":
            raise ModelLoadError(f"backend 'torch' runs checkpoints (.pth or a Hugging Face directory), not {path}")
        source = path.parent if path.suffix == ".safetensors" else path
        try:
            model = load_depth_anything_v2(source)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
        cuda = options.device in ("auto", "cuda") and torch.cuda.is_available()
        if options.device == "cuda" and not cuda:
            raise ModelLoadError("device 'cuda' was requested but torch sees no CUDA device")
        self.device = "cuda" if cuda else "cpu"
        if options.num_threads > 0:
            torch.set_num_threads(options.num_threads)
        self._dtype = torch.float16 if half and cuda else torch.float32
        self._model = model.to(self.device, self._dtype)
        encoder = {384: "vits", 768: "vitb", 1024: "vitl"}[model.config.vit.dim]
        contract = ModelContract.from_dict(model.contract_fields(encoder, 518, 518))
        self._contract = contract
        self._metadata = {METADATA_KEY: contract.to_json()}

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def reference_onnx(self, size: tuple[int, int], workdir: Path) -> Path:
        """This checkpoint exported to ONNX at ``size`` (height, width): what backend_check runs in ONNX Runtime."""
        import copy

        import torch

        from depth_ros.backends.export import export_onnx

        path = workdir / "reference.onnx"
        model = copy.deepcopy(self._model).to("cpu", torch.float32)
        export_onnx(model, self._contract, path, size, simplify=False)
        return path

    def infer(self, tensor: Any, extra_outputs: tuple[int, ...] = ()) -> Any:
        import torch

        host = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))
        result = self.infer_device(host, extra_outputs)
        if extra_outputs:
            return tuple(output.cpu().numpy() for output in result)
        return result.cpu().numpy()

    def infer_device(self, tensor: torch.Tensor, extra_outputs: tuple[int, ...] = ()) -> Any:
        """float32 NCHW tensor in -> float32 output on this backend's device (cast to fp16 and back when the
        model runs in half precision), so the pipeline's torch pre/postprocessing stays on the device. A network
        returning several outputs returns a tuple; ``extra_outputs`` picks from it (see InferenceBackend.infer)."""
        import torch

        with torch.inference_mode():
            result = self._model(tensor.to(self.device, self._dtype))
        outputs = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        if not extra_outputs:
            return outputs[0].float()
        if max(extra_outputs) >= len(outputs):
            raise ModelLoadError(f"the network has {len(outputs)} output(s); output {max(extra_outputs)} was asked for")
        return tuple(outputs[i].float() for i in (0, *extra_outputs))


def register() -> None:
    register_backend("torch", TorchBackend, _probe, priority=0)
