"""A short distillation on real frames: a tiny ONNX teacher -> a tinier student; its export runs in depth_node.

The teacher is a small random conv net exported to ONNX with a canonical_inverse_depth contract and run
through the node's own backends (ONNX Runtime). The student's error against the teacher is measured here,
independently of the training code, before and after training.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from oracles import camera_info, rgb_image

from depth_ros.bags.samples import read_rgb_file
from depth_ros.core.contract import read_contract_from_onnx_metadata
from depth_ros.training import data as d
from depth_ros.training.train import TrainConfig, build_student, export_onnx, load_checkpoint, normalise, train

REPO = Path(__file__).resolve().parents[2]
FRAMES = [REPO / "data/realsense_d435/color.png", REPO / "data/tum_fr2_desk/rgb_1.png",
          REPO / "data/tum_fr2_desk/rgb_2.png"]
W, H = 96, 64


def _student_vs_teacher(model: torch.nn.Module, examples: d.Examples) -> float:
    """Mean |ln C_student − ln C_teacher| over the frames (computed here, not by the training code)."""
    model.eval()
    with torch.no_grad():
        rgb = torch.from_numpy(examples.rgb).permute(0, 3, 1, 2).float() / 255.0
        pred = model(normalise(rgb))[:, 0].numpy()
    model.train()
    return float(np.mean(np.abs(np.log(pred) - np.log(examples.label))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    teacher = build_student("tiny_conv")
    with torch.no_grad():  # a teacher with a clearly image-dependent output
        teacher[-2].weight.mul_(8.0)
        teacher[-2].bias.fill_(1.0)
    teacher_path = export_onnx(teacher, tmp / "teacher.onnx", TrainConfig(width=128, height=96), "canonical",
                               name="tiny teacher")
    images = [read_rgb_file(p) for p in FRAMES]
    labeller = d.TeacherLabeller(str(teacher_path), tmp / "cache")
    examples = d.teacher_examples(images, labeller, W, H)
    assert labeller.computed == 3 and examples.kind == "canonical"
    again = d.TeacherLabeller(str(teacher_path), tmp / "cache")
    cached = d.teacher_examples(images, again, W, H)
    assert again.computed == 0 and np.array_equal(cached.label, examples.label)  # pseudo labels from the cache

    config = TrainConfig(arch="student_cnn_xs", width=W, height=H, epochs=40, batch_size=3, lr=1e-2, seed=0,
                         val_fraction=0.0, threads=2)
    torch.manual_seed(config.seed)
    before = _student_vs_teacher(build_student("student_cnn_xs"), examples)
    history = train(config, examples, tmp / "run", log=lambda _: None)
    student = build_student("student_cnn_xs")
    student.load_state_dict(load_checkpoint(tmp / "run" / "last.pt")["model"])
    after = _student_vs_teacher(student, examples)
    onnx_path = export_onnx(student, tmp / "student.onnx", config, "canonical")
    return {"before": before, "after": after, "history": history, "student": student, "onnx": onnx_path,
            "examples": examples, "tmp": tmp, "config": config}


def test_student_vs_teacher_error_falls(trained: dict) -> None:
    print(f"student vs teacher mean |ln C| error: {trained['before']:.3f} -> {trained['after']:.3f}")
    assert trained["after"] < 0.7 * trained["before"]  # measured: 0.585 -> 0.305
    assert len(trained["history"]) == trained["config"].epochs


def test_exported_student_matches_torch_and_resume_continues(trained: dict) -> None:
    examples = trained["examples"]
    session = ort.InferenceSession(str(trained["onnx"]), providers=["CPUExecutionProvider"])
    rgb = torch.from_numpy(examples.rgb[:1]).permute(0, 3, 1, 2).float() / 255.0
    x = normalise(rgb)
    with torch.no_grad():
        expected = trained["student"].eval()(x).numpy()
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, rtol=1e-4, atol=1e-5)
    # A dynamic batch (several cameras in one forward pass): three images at once are each one alone.
    assert isinstance(session.get_inputs()[0].shape[0], str)
    three = normalise(torch.from_numpy(examples.rgb[:3]).permute(0, 3, 1, 2).float() / 255.0).numpy()
    together = session.run(None, {"image": three})[0]
    assert together.shape[0] == 3
    for i in range(3):
        np.testing.assert_allclose(together[i:i + 1], session.run(None, {"image": three[i:i + 1]})[0], atol=1e-5)


def test_mirror_averaged_export_is_mirror_equivariant_and_the_mean_of_both_passes(trained: dict) -> None:
    """Depth of a mirrored scene is the mirrored depth: the mirror-averaged export must have that symmetry
    exactly, and be the mean of the plain export on the image and (mirrored back) on its mirror image."""
    path = export_onnx(trained["student"], trained["tmp"] / "mirror.onnx", trained["config"], "canonical",
                       mirror_average=True)
    averaged = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(trained["onnx"]), providers=["CPUExecutionProvider"])
    x = normalise(torch.from_numpy(trained["examples"].rgb).permute(0, 3, 1, 2).float() / 255.0).numpy()
    mirrored = np.ascontiguousarray(x[..., ::-1])

    def run(session: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": images})[0]

    out = run(averaged, x)
    assert out.shape == (3, 1, H, W)
    np.testing.assert_allclose(run(averaged, mirrored)[..., ::-1], out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, 0.5 * (run(plain, x) + run(plain, mirrored)[..., ::-1]), rtol=1e-5, atol=1e-6)
    # The symmetry comes from the averaging: the plain network has none.
    assert np.max(np.abs(run(plain, mirrored)[..., ::-1] - run(plain, x))) > 1e-2 * np.max(np.abs(run(plain, x)))
    contract = read_contract_from_onnx_metadata(averaged.get_modelmeta().custom_metadata_map, str(path))
    assert contract.output_kind == "canonical_inverse_depth" and "mirror-averaged" in contract.source


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(trained: dict) -> None:
    """Stopped after 3 of 6 epochs and resumed from its last.pt, a run (with perturbations and a validation
    split: every random state matters) ends with the uninterrupted run's weights and history, to the bit. A
    resume that lost the optimiser, the schedule, a random state or the epoch count would differ."""
    from dataclasses import asdict, replace

    examples = trained["examples"]
    config = replace(trained["config"], epochs=6, val_fraction=0.34, perturb=True, cutmix_p=0.5)
    tmp = trained["tmp"]
    whole = train(config, examples, tmp / "whole", log=lambda _: None)
    first = train(config, examples, tmp / "parts", log=lambda _: None, stop_after=3)
    assert len(first) == 3
    rest = train(config, examples, tmp / "parts", resume=tmp / "parts" / "last.pt", log=lambda _: None)

    def without_time(history: list) -> list[dict]:
        return [{k: v for k, v in asdict(h).items() if k != "seconds"} for h in history]

    assert without_time(rest) == without_time(whole) and len(whole) == 6
    expected, got = load_checkpoint(tmp / "whole" / "last.pt"), load_checkpoint(tmp / "parts" / "last.pt")
    assert expected["epoch"] == got["epoch"] == 5
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    # And a fresh run of half the length is not the same (the comparison can fail).
    short = train(replace(config, epochs=3), examples, tmp / "short", log=lambda _: None)
    assert without_time(short) != without_time(whole[:3])


def test_trained_student_runs_in_the_node_and_gives_finite_metric_depth(trained: dict, depth_node) -> None:
    fx, fy, cx, cy = 613.2037, 613.4193, 319.9388, 239.1830  # the D435 colour camera (data/README)
    bgr = cv2.imread(str(FRAMES[0]), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    _, client = depth_node({"model": str(trained["onnx"]), "min_depth": 0.01, "max_depth": 1000.0,
                            "edge_filter": False})
    out = client.send(rgb_image(rgb), camera_info(640, 480, fx, fy, cx, cy), 1_000_000_000, wanted=("depth",))
    depth = np.frombuffer(out.depth.data, np.float32).reshape(out.depth.height, out.depth.width)
    assert depth.shape == (480, 640)
    assert np.isfinite(depth).mean() > 0.99
    # Metric conversion with the camera's focal length: D = (fx/W) / C, C = the student's output (ONNX Runtime).
    session = ort.InferenceSession(str(trained["onnx"]), providers=["CPUExecutionProvider"])
    small = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((small - mean) / std).astype(np.float32).transpose(2, 0, 1)[None]
    c = session.run(None, {"image": x})[0][0, 0]
    expected_median = float(np.median((fx / 640) / c))
    assert abs(float(np.nanmedian(depth)) / expected_median - 1) < 0.05


def test_init_starts_from_a_checkpoints_weights_at_another_size(trained: dict) -> None:
    """`--init`: fine-tuning starts from the given weights (any input size: the students are fully convolutional)."""
    examples = trained["examples"]
    big = d.Examples(np.stack([cv2.resize(x, (2 * W, 2 * H)) for x in examples.rgb]),
                     np.stack([cv2.resize(x, (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST) for x in examples.label]),
                     examples.kind, examples.pseudo)
    config = TrainConfig(arch="student_cnn_xs", width=2 * W, height=2 * H, epochs=1, batch_size=3, lr=0.0, seed=1,
                         val_fraction=0.0, threads=2)
    start = load_checkpoint(trained["tmp"] / "run" / "last.pt")["model"]
    train(config, big, trained["tmp"] / "finetune", log=lambda _: None, init=trained["tmp"] / "run" / "last.pt")
    after = load_checkpoint(trained["tmp"] / "finetune" / "last.pt")["model"]
    weights = [k for k in start if k.endswith(".weight")]
    assert weights and all(torch.equal(start[k], after[k]) for k in weights)  # lr 0: still the initial weights
    fresh = build_student("student_cnn_xs").state_dict()
    assert not all(torch.equal(start[k], fresh[k]) for k in weights)


def test_rgbd_bag_as_teacher_and_bag_images_with_a_model_teacher(tmp_path: Path, trained: dict) -> None:
    """`train --bag --depth-topic`: the sensor's registered depth becomes canonical labels (f/W)/Z; `train --bag
    --teacher`: the bag's images are labelled by the teacher. Both through the command line, one epoch each."""
    from rclpy.serialization import serialize_message
    from test_evaluation import _image_msg

    from depth_ros.bags.io import BagWriter
    from depth_ros.cli import main as cli_main

    fx, fy, cx, cy = 613.2037, 613.4193, 319.9388, 239.1830  # the D435 colour camera (data/README)
    rgb = read_rgb_file(FRAMES[0])
    depth_mm = cv2.imread(str(REPO / "data/realsense_d435/depth_in_color_mm.png"), cv2.IMREAD_UNCHANGED)
    info = camera_info(640, 480, fx, fy, cx, cy)
    bag = tmp_path / "rgbd"
    stamps = [1_000_000_000 + k * 33_000_000 for k in range(2)]
    with BagWriter(bag) as writer:
        for stamp in stamps:
            writer.write("/cam/camera_info", "sensor_msgs/msg/CameraInfo", stamp, serialize_message(info))
            writer.write("/cam/image", "sensor_msgs/msg/Image", stamp,
                         serialize_message(_image_msg(rgb, "rgb8", stamp)))
            writer.write("/cam/depth", "sensor_msgs/msg/Image", stamp + 1,
                         serialize_message(_image_msg(depth_mm, "16UC1", stamp)))
    examples = d.sensor_examples(bag, "/cam/depth", "/cam/image", "/cam/camera_info", 128, 96, 20.0)
    assert len(examples) == 2 and examples.kind == "canonical" and not examples.pseudo
    z = cv2.resize(depth_mm.astype(np.float32) / 1000.0, (128, 96), interpolation=cv2.INTER_NEAREST)
    valid = z > 0
    np.testing.assert_allclose(examples.label[0][valid], (fx / 640) / z[valid], rtol=1e-5)
    assert np.isnan(examples.label[0][~valid]).all()  # no depth -> no label, never 0
    common = ["--arch", "student_cnn_xs", "--input-size", "128x96", "--epochs", "1", "--batch-size", "2",
              "--val-fraction", "0", "--threads", "2"]
    assert cli_main(["train", "--out", str(tmp_path / "rgbd_run"), "--bag", str(bag), "--image-topic", "/cam/image",
                     "--depth-topic", "/cam/depth", "--camera-info-topic", "/cam/camera_info", *common]) == 0
    assert (tmp_path / "rgbd_run" / "last.pt").is_file()
    assert cli_main(["train", "--out", str(tmp_path / "teacher_run"), "--bag", str(bag), "--image-topic", "/cam/image",
                     "--teacher", str(trained["onnx"]), "--teacher-backend", "onnxruntime", *common]) == 0
    assert len(list((tmp_path / "teacher_run" / "label_cache").glob("*.npz"))) == 1  # two equal frames, one label


def test_two_process_ddp_run_under_torchrun(tmp_path: Path) -> None:
    """`torchrun -m depth_ros.cli train`: two ranks (gloo on CPU) train one model; rank 0 validates and writes."""
    import json
    import subprocess
    import sys

    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "depth_ros.cli", "train", "--out", str(out), "--synthetic", "16", "--input-size", "64x64",
         "--arch", "student_cnn_xs", "--epochs", "2", "--batch-size", "4", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 reports
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and all(np.isfinite(h["val_abs_rel"]) for h in history)
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_feature_alignment_to_a_frozen_encoder_raises_similarity(tmp_path: Path, trained: dict) -> None:
    """--align-encoder: the student's projected deepest features move towards a frozen DA-V2 encoder's."""
    from depth_ros.nets.depth_anything_v2 import build as build_dav2
    from depth_ros.training.losses import feature_alignment_loss
    from depth_ros.training.train import AlignedStudent, FrozenEncoder

    torch.manual_seed(3)
    checkpoint = tmp_path / "dav2_vits_random.pth"
    torch.save(build_dav2("vits").state_dict(), checkpoint)  # random weights: the loading path is the real one
    config = TrainConfig(arch="student_cnn_xs", width=W, height=H, epochs=15, batch_size=3, lr=1e-2, seed=0,
                         val_fraction=0.0, threads=2, feature_weight=5.0, perturb=False)
    lines: list[str] = []
    train(config, trained["examples"], tmp_path / "aligned", log=lines.append, align_encoder=checkpoint)
    assert any("feature alignment" in line for line in lines)
    state = load_checkpoint(tmp_path / "aligned" / "last.pt")
    assert state["projection"]["weight"].shape == (384, 48, 1, 1)

    # The same initial student + projection train() started from (same seed, same construction order).
    torch.manual_seed(config.seed)
    start = AlignedStudent(build_student("student_cnn_xs"), FrozenEncoder(checkpoint).channels)
    frozen = FrozenEncoder(checkpoint)
    end = AlignedStudent(build_student("student_cnn_xs"), frozen.channels)
    end.student.load_state_dict(state["model"])
    end.projection.load_state_dict(state["projection"])
    rgb = torch.from_numpy(trained["examples"].rgb).permute(0, 3, 1, 2).float() / 255.0
    x = normalise(rgb)
    with torch.no_grad():
        target = frozen(x)
        before = float(feature_alignment_loss(start.eval()(x)[1], target, margin=1.0))
        after = float(feature_alignment_loss(end.eval()(x)[1], target, margin=1.0))
    print(f"1 - cosine to the frozen encoder: {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before
