"""Small ONNX graphs the project builds itself, and embedding a contract into any ONNX model.

- `map_model`: a graph whose output is a given map, whatever the image (the tests' oracle models,
  whose output is a known exact depth/inverse depth, and the benchmarks' null model); optionally a second
  output, another given map (a model's uncertainty output: the contract's ``confidence_output``); optionally
  a batch other than 1 (a fixed N, or a dynamic one), every image of a batch getting the map.
"""

from __future__ import annotations

import numpy as np

from depth_ros.core.contract import METADATA_KEY, ModelContract


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
              output_rank: int = 4, second_output: np.ndarray | None = None, batch: int | str = 1) -> "object":
    """An ONNX model whose first output is ``output`` (h, w), whatever the image; with ``second_output``
    (same shape) a second output ``uncertainty`` that is that map.

    The output also depends on the input (+ 0 * mean(input)) so that runtimes keep the input
    and really run the graph. ``input_size`` None gives a dynamic H, W input. ``batch``: dim 0 of the input and
    the outputs, a number or a name (a dynamic batch); the map is repeated for every image.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    height, width = input_size if input_size is not None else ("height", "width")
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, height, width])
    map_shape = [1, 1, *output.shape] if output_rank == 4 else [1, *output.shape]
    out_shape = [batch, *map_shape[1:]]
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)
    value = numpy_helper.from_array(np.asarray(output, np.float32).reshape(map_shape), "map")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    initialisers = [value, zero]
    if batch == 1:  # the graph the tests have always used: one mean over everything
        nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0)]
    elif output_rank == 4:  # a mean per image, (N, 1, 1, 1): adding it broadcasts the map over the batch
        nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1)]
    else:  # (N, 1, 1) for an (N, h, w) output
        nodes = [helper.make_node("ReduceMean", ["image"], ["mean_n"], axes=[1, 2, 3], keepdims=0),
                 helper.make_node("Unsqueeze", ["mean_n", "axes"], ["mean"])]
        initialisers.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
    nodes += [
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["map", "nothing"], ["depth"]),
    ]
    outputs = [y]
    if second_output is not None:
        outputs.append(helper.make_tensor_value_info("uncertainty", TensorProto.FLOAT, out_shape))
        initialisers.append(numpy_helper.from_array(np.asarray(second_output, np.float32).reshape(map_shape), "map2"))
        nodes.append(helper.make_node("Add", ["map2", "nothing"], ["uncertainty"]))
    graph = helper.make_graph(nodes, "depth_ros_map", [x], outputs, initialisers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="depth_ros")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    set_contract(model, contract)
    return model
