"""Trainable weights back from an exported student ONNX: fine-tune the embedded default without its checkpoint.

The ONNX exporter folds each batch norm into the convolution before it (W' = W·γ/σ, b' = β − γ·μ/σ), so the
file holds one weight and bias per convolution and no normalisation statistics. Loading puts W' into the
convolution and makes the batch norm after it the identity plus b' (γ = 1, μ = 0, σ² = 1 − ε): the network
then computes exactly what the file computes. Training normalises by the statistics of each batch instead, so
``recalibrate_batch_norm`` measures those statistics on training images and re-expresses each batch norm with
them (μ, σ² measured; γ = σ, β = μ + b'): the same function in evaluation mode, and in training mode the batch
statistics that fine-tuning starts from now match the ones the loaded function expects.

Convolutions are matched in execution order (a traced forward pass against the graph's node order, which the
exporter writes as traced) and every shape is checked; the loaded network is then run against the file with
ONNX Runtime, so a file from another architecture fails loudly instead of loading garbage.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _convs_in_execution_order(model: nn.Module, height: int, width: int) -> list[nn.Conv2d]:
    order: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda module, _i, _o: order.append(module))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _batch_norm_after(model: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each convolution followed directly by a batch norm in the same Sequential (depth_ros's conv-bn blocks)."""
    pairs: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for first, second in zip(children, children[1:], strict=False):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    pairs[first] = second
    return pairs


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def load_student_onnx(model: nn.Module, path: str | Path, tolerance: float = 1e-4) -> nn.Module:
    """Load an exported depth_ros student (plain or mirror-averaged export) into ``model`` of the same architecture.

    Raises ValueError naming what did not match (convolution count, a shape, or the outputs)."""
    import onnx
    from onnx import numpy_helper

    from depth_ros.nets.students import MirrorAveraged

    path = Path(path)
    proto = onnx.load(str(path))
    initialisers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    graph_convs = [node for node in proto.graph.node if node.op_type == "Conv"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    height, width = int(dims[2].dim_value), int(dims[3].dim_value)
    if height <= 0 or width <= 0:
        raise ValueError(f"{path}: the input size is not fixed in the graph; is this a depth_ros student export?")
    convs = _convs_in_execution_order(model, height, width)
    if len(convs) != len(graph_convs):
        raise ValueError(f"{path} has {len(graph_convs)} convolutions, the architecture {len(convs)}: "
                         "pass the --arch the file was trained with")
    batch_norms = _batch_norm_after(model)
    with torch.no_grad():
        for index, (conv, node) in enumerate(zip(convs, graph_convs, strict=True)):
            weight = initialisers.get(node.input[1])
            bias = initialisers.get(node.input[2]) if len(node.input) > 2 else None
            if weight is None or tuple(weight.shape) != tuple(conv.weight.shape):
                found = None if weight is None else tuple(weight.shape)
                raise ValueError(f"{path}: convolution {index} ({node.name}) has weight shape {found}, the "
                                 f"architecture {tuple(conv.weight.shape)}: pass the --arch the file was trained with")
            bias_array = np.zeros(conv.out_channels, np.float32) if bias is None else np.array(bias, dtype=np.float32)
            conv.weight.copy_(torch.from_numpy(np.array(weight, dtype=np.float32)))
            norm = batch_norms.get(conv)
            if norm is not None:
                norm.weight.fill_(1.0)
                norm.bias.copy_(torch.from_numpy(bias_array))
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
            elif conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(bias_array))
            elif np.any(bias_array != 0):
                raise ValueError(f"{path}: convolution {index} ({node.name}) has a bias the architecture lacks")
    model.eval()
    probe = np.random.default_rng(0).normal(size=(2, 3, height, width)).astype(np.float32)
    expected = _run_onnx(path, probe)
    with torch.no_grad():
        for candidate in (model, MirrorAveraged(model)):
            got = candidate(torch.from_numpy(probe)).numpy()
            if got.shape == expected.shape and float(np.max(np.abs(got - expected))) <= tolerance * (
                    1.0 + float(np.max(np.abs(expected)))):
                return model
    raise ValueError(f"{path}: the loaded network does not reproduce the file's output: "
                     "pass the --arch the file was trained with")


def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-express every batch norm with the statistics of its inputs on ``batches`` (normalised images), keeping
    the evaluation-mode function unchanged. Returns the number of images measured."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[nn.BatchNorm2d, list[torch.Tensor]] = {n: [] for n in norms}

    def record(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        x = inputs[0].detach().double()
        sums[module].append(torch.stack([x.mean(dim=(0, 2, 3)), (x * x).mean(dim=(0, 2, 3))]) * x.shape[0])

    hooks = [n.register_forward_hook(record) for n in norms]
    images = 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
                images += batch.shape[0]
    finally:
        for hook in hooks:
            hook.remove()
    if images == 0:
        return 0
    with torch.no_grad():
        for norm in norms:
            first, second = (torch.stack(sums[norm]).sum(dim=0) / images).unbind(0)
            mean, var = first, (second - first * first).clamp_min(0.0)
            # Evaluation computes γ(x − μ)/√(σ² + ε) + β. Keep it equal to the current γ0(x − μ0)/s0 + β0.
            scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
            shift = norm.bias.double() - scale * norm.running_mean.double()
            std = torch.sqrt(var + norm.eps)
            norm.running_mean.copy_(mean.float())
            norm.running_var.copy_(var.float())
            norm.weight.copy_((scale * std).float())
            norm.bias.copy_((shift + scale * mean).float())
    return images
