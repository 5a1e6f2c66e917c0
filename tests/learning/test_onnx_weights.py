"""Fine-tuning from an exported student ONNX (the embedded default ships without its checkpoint).

The reference is always the file run by ONNX Runtime: the loaded network must compute what the file computes,
and re-expressing the batch norms with measured statistics must not change that function (evaluation mode)
while making training mode, on the measured batch, compute it too (batch statistics = the measured ones).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from depth_ros.training import data as d
from depth_ros.training.onnx_weights import load_student_onnx, recalibrate_batch_norm
from depth_ros.training.train import TrainConfig, build_student, export_onnx, load_checkpoint, normalise, train

W, H = 64, 48
ROOT = Path(__file__).resolve().parents[2]


def _like_a_trained_student(arch: str = "student_cnn_xs") -> torch.nn.Module:
    """Random weights with non-trivial batch norms (statistics and affine terms far from the defaults), so that
    the exporter's folding changes every convolution."""
    torch.manual_seed(3)
    model = build_student(arch)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.3, 3.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def _images(n: int, seed: int, height: int = H, width: int = W) -> torch.Tensor:
    rgb = np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    return normalise(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0)


@pytest.mark.parametrize("mirror_average", [False, True])
def test_loaded_student_computes_what_the_file_computes(tmp_path: Path, mirror_average: bool) -> None:
    path = export_onnx(_like_a_trained_student(), tmp_path / "s.onnx", TrainConfig(width=W, height=H), "canonical",
                       mirror_average=mirror_average)
    loaded = load_student_onnx(build_student("student_cnn_xs"), path).eval()
    x = _images(3, 1)
    expected = _onnx(path, x.numpy())
    with torch.no_grad():
        got = loaded(x) if not mirror_average else 0.5 * (loaded(x) + torch.flip(loaded(torch.flip(x, [3])), [3]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert float(np.std(expected)) > 1e-3  # an image-dependent output, not a constant that anything reproduces


def test_the_embedded_default_loads_into_its_architecture() -> None:
    path = ROOT / "models" / "depth_ros_student_s.onnx"
    loaded = load_student_onnx(build_student("student_cnn_s"), path).eval()
    x = _images(2, 2, 96, 128)  # its native input size
    expected = _onnx(path, x.numpy())
    with torch.no_grad():
        plain = loaded(x).numpy()
        mirrored = (0.5 * (loaded(x) + torch.flip(loaded(torch.flip(x, [3])), [3]))).numpy()
    assert min(np.max(np.abs(plain - expected)), np.max(np.abs(mirrored - expected))) < 1e-4


def test_a_file_of_another_architecture_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = export_onnx(_like_a_trained_student(), tmp_path / "xs.onnx", TrainConfig(width=W, height=H), "canonical")
    with pytest.raises(ValueError, match="--arch"):
        load_student_onnx(build_student("student_cnn_s"), path)


def test_recalibrated_batch_norms_keep_the_function_and_match_training_mode_on_the_measured_batch(
        tmp_path: Path) -> None:
    path = export_onnx(_like_a_trained_student(), tmp_path / "s.onnx", TrainConfig(width=W, height=H), "canonical")
    model = load_student_onnx(build_student("student_cnn_xs"), path)
    batch = _images(16, 4)
    assert recalibrate_batch_norm(model, [batch[:8], batch[8:]]) == 16
    expected = _onnx(path, batch.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(batch).numpy(), expected, rtol=1e-4, atol=1e-5)
        # Training mode normalises by this batch's own statistics: the measured ones, so the same function.
        in_training = copy.deepcopy(model).train()(batch).numpy()
    np.testing.assert_allclose(in_training, expected, rtol=1e-3, atol=1e-4)
    before = load_student_onnx(build_student("student_cnn_xs"), path)
    with torch.no_grad():  # without recalibration, training mode is a different function
        assert np.max(np.abs(before.train()(batch).numpy() - expected)) > 10 * np.max(np.abs(in_training - expected))


def test_train_init_from_an_onnx_file_starts_from_its_function(tmp_path: Path) -> None:
    """`depth-ros train --init student.onnx`: with lr 0 and unperturbed inputs, one epoch on the calibration
    images leaves the network computing what the file computes."""
    path = export_onnx(_like_a_trained_student(), tmp_path / "s.onnx", TrainConfig(width=W, height=H), "canonical")
    rng = np.random.default_rng(5)
    examples = d.Examples(rng.integers(0, 256, size=(12, H, W, 3), dtype=np.uint8),
                          rng.uniform(0.2, 1.0, size=(12, H, W)).astype(np.float32), "canonical", False)
    config = TrainConfig(arch="student_cnn_xs", width=W, height=H, epochs=1, batch_size=12, lr=0.0, seed=0,
                         val_fraction=0.0, threads=2, perturb=False)
    lines: list[str] = []
    train(config, examples, tmp_path / "run", log=lines.append, init=path)
    assert any("batch norm statistics measured on 12 training images" in line for line in lines)
    model = build_student("student_cnn_xs")
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "last.pt")["model"])
    x = normalise(torch.from_numpy(examples.rgb).permute(0, 3, 1, 2).float() / 255.0)
    with torch.no_grad():
        got = model.eval()(x).numpy()
    np.testing.assert_allclose(got, _onnx(path, x.numpy()), rtol=1e-3, atol=1e-4)
