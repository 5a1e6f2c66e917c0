"""Small ONNX graphs the project builds itself, and embedding a contract into any ONNX model.

- `map_model`: a graph whose output is a given map (used for the embedded default "room prior"
  and by the tests' oracle models, whose output is a known exact depth/inverse depth).
- `room_prior_map`: the default model's output: canonical inverse depth of an empty box room.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_ros.contract import METADATA_KEY, ModelContract


def set_contract(model: "object", contract: ModelContract) -> None:
    """Store ``contract`` in an onnx.ModelProto's metadata_props (replacing any previous one)."""
    props = model.metadata_props  # type: ignore[attr-defined]
    for prop in list(props):
        if prop.key == METADATA_KEY:
            props.remove(prop)
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = contract.to_json()


def map_model(output: np.ndarray, contract: ModelContract, input_size: tuple[int, int] | None = None,
              output_rank: int = 4) -> "object":
    """An ONNX model whose first output is ``output`` (h, w), whatever the image.

    The output also depends on the input (+ 0 * mean(input)) so that runtimes keep the input
    and really run the graph. ``input_size`` None gives a dynamic H, W input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = input_size if input_size is not None else ("height", "width")
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])
    out_shape = [1, 1, *output.shape] if output_rank == 4 else [1, *output.shape]
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)
    value = numpy_helper.from_array(np.asarray(output, np.float32).reshape(out_shape), "map")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["map", "nothing"], ["depth"]),
    ]
    graph = helper.make_graph(nodes, "depth_ros_map", [x], [y], [value, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model


def room_prior_map(height: int, width: int, f_over_w: float = 0.9, floor: float = 1.0,
                   ceiling: float = 1.6, half_width: float = 2.0, far: float = 6.0) -> np.ndarray:
    """Canonical inverse depth C = (f/W) / Z of an empty box room seen level from its middle.

    Floor ``floor`` m below the camera, ceiling ``ceiling`` m above, side walls ``half_width``
    m left and right, far wall ``far`` m ahead, for a camera with focal ratio ``f_over_w``.
    """
    f = f_over_w * width
    u = np.arange(width, dtype=np.float64) + 0.5 - width / 2
    v = np.arange(height, dtype=np.float64) + 0.5 - height / 2
    x_n, y_n = np.meshgrid(u / f, v / f)
    with np.errstate(divide="ignore"):
        candidates = np.stack([
            np.where(y_n > 0, floor / y_n, np.inf),
            np.where(y_n < 0, ceiling / -y_n, np.inf),
            np.where(x_n != 0, half_width / np.abs(x_n), np.inf),
            np.full_like(x_n, far),
        ])
    z = candidates.min(axis=0)
    return (f_over_w / z).astype(np.float32)


ROOM_PRIOR_CONTRACT = {
    "output_kind": "canonical_inverse_depth",
    "input": {"height": 192, "width": 256, "resize": "stretch", "channels": "rgb",
              "scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "min_depth": 0.1,
    "max_depth": 20.0,
    "name": "depth_ros room prior (geometric placeholder, not learned)",
    "license": "Apache-2.0",
    "source": "depth-ros build-default-model (depth_ros.graph_models.room_prior_map)",
}


def build_room_prior(path: str | Path) -> Path:
    """Write the embedded default model to ``path``."""
    import onnx

    contract = ModelContract.from_dict(ROOM_PRIOR_CONTRACT)
    prior = room_prior_map(contract.input.height, contract.input.width)
    model = map_model(prior, contract, (contract.input.height, contract.input.width))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
