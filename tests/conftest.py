"""Shared fixtures: one rclpy context per test session, DDS kept on this machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ros_harness import CLIENT_DDS_ENV, RUN_DIR, Client, NodeProcess, start_node  # noqa: E402

from depth_ros.ros.dds import release_domain_id, reserve_domain_id  # noqa: E402

# Every process of the suite (this one and the nodes it starts) keeps DDS on localhost, in this run's domain.
os.environ.update(CLIENT_DDS_ENV)
# Nothing the suite builds lands in the user's ~/.cache: TensorRT engines go to this run's directory.
os.environ["DEPTH_ROS_ENGINE_CACHE"] = str(RUN_DIR / "engines")
os.environ.setdefault("ROS_LOG_DIR", str(RUN_DIR / "ros_log"))  # nor in ~/.ros/log


@pytest.fixture(scope="session")
def ros_context() -> Iterator[object]:
    import rclpy

    rclpy.init()
    node = rclpy.create_node("depth_ros_test_client")
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def own_domain() -> Iterator[int]:
    """A ROS domain of the test's own, for tools whose topics are global names (reserved, then released)."""
    domain_id = reserve_domain_id()
    yield domain_id
    release_domain_id(domain_id)


@pytest.fixture
def depth_node(ros_context: object) -> Iterator[Callable[..., tuple[NodeProcess, Client]]]:
    """Factory: start depth_node with parameters, return (process, client) once matched on DDS."""
    started: list[tuple[NodeProcess, Client]] = []

    def start(params: dict | None = None, reliable: bool = True, compressed: bool = False,
              inputs: dict[str, type] | None = None, **kwargs: object) -> tuple[NodeProcess, Client]:
        """reliable (default): the node's inputs and the client are reliable, so every frame is delivered and
        acknowledged once; False keeps the shipped best-effort inputs (the client then repeats a frame until
        its outputs arrive). inputs: more input topics the client publishes on (`Client.pubs[name]`, e.g.
        {"reference_depth": Image}). Other keywords go to `start_node` (params_file, remaps, executable)."""
        params = dict(params or {})
        # The oracle tests' exact values are ONNX Runtime's: 'auto' would pick TensorRT where it is installed.
        params.setdefault("backend", "onnxruntime")
        if reliable:
            params.setdefault("input_qos_reliability", "reliable")
        if compressed:
            params.setdefault("image_transport", "compressed")
        process = start_node(params, **kwargs)
        client = Client(ros_context, process.namespace, reliable=reliable, compressed=compressed,  # type: ignore[arg-type]
                        inputs=dict(inputs or {}))
        started.append((process, client))
        client.wait_ready(process)
        return process, client

    yield start
    for process, client in started:
        client.close()
        code = process.stop()
        assert code == 0, f"depth_node exited with {code}:\n{process.output()}"
