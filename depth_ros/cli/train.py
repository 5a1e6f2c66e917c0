"""`depth-ros train`: arguments and the run (data sources -> train -> optional ONNX export)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from depth_ros.synthetic.recipes import DEFAULT_RECIPE, RECIPES


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 256x192") from exc
    if width < 32 or height < 32 or width % 32 or height % 32:
        raise argparse.ArgumentTypeError(f"size {text!r}: both sides must be multiples of 32 (the encoder's stride)")
    return width, height


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="distil a student from a teacher model, an RGB-D sensor's depth or synthetic "
                       "scenes; validate, checkpoint, export to ONNX with its contract")
    p.add_argument("--out", required=True, help="run folder: checkpoints (last.pt, best.pt), history.json")
    p.add_argument("--arch", default="student_cnn_s", help="student architecture (depth_ros.nets registry)")
    p.add_argument("--input-size", type=_size, default=(256, 192), metavar="WxH", help="student input size")
    data = p.add_argument_group("data (any combination with one label kind)")
    data.add_argument("--synthetic", type=int, default=0, metavar="N", help="N procedural frames with exact depth")
    data.add_argument("--synthetic-seed", type=int, default=0, help="data set seed of the procedural frames")
    data.add_argument("--synthetic-recipe", default=DEFAULT_RECIPE, choices=sorted(RECIPES),
                      help="procedural scene recipe (depth_ros.synthetic.recipes)")
    data.add_argument("--images", action="append", default=[], metavar="DIR", help="image folder (needs --teacher)")
    data.add_argument("--bag", action="append", default=[], help="bag with images (--image-topic)")
    data.add_argument("--image-topic", help="image topic in --bag (raw or .../compressed)")
    data.add_argument("--depth-topic", help="depth topic in --bag registered to the images: the sensor is the teacher")
    data.add_argument("--camera-info-topic", help="CameraInfo of --image-topic (for --depth-topic labels)")
    data.add_argument("--teacher", help="teacher model for --images / --bag images (ONNX with a contract)")
    data.add_argument("--teacher-backend", default="auto")
    data.add_argument("--cache", help="pseudo-label cache folder (default OUT/label_cache)")
    data.add_argument("--workers", type=int, default=1, help="processes rendering synthetic frames")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--cutmix", type=float, default=0.5, help="CutMix probability")
    t.add_argument("--no-perturb", action="store_true", help="no colour jitter, blur or CutMix")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    t.add_argument("--max-depth", type=float, default=20.0, help="metres: labels beyond are ignored; contract range")
    t.add_argument("--resume", help="checkpoint to continue from (OUT/last.pt): ends exactly as an uninterrupted run")
    t.add_argument("--stop-after", type=int, metavar="EPOCHS",
                   help="return after this many epochs (the schedule still spans --epochs); --resume continues")
    t.add_argument("--align-encoder", metavar="CKPT", help="feature alignment to this frozen Depth Anything V2 "
                   "encoder (.pth or Hugging Face directory): 1 - cosine similarity, margin 0.85")
    t.add_argument("--align-weight", type=float, default=1.0, help="weight of the feature alignment loss")
    t.add_argument("--init", help="start from this checkpoint's weights only (fine-tuning: another size, new data); "
                   "or from an exported student .onnx of the same --arch, e.g. the embedded default")
    p.add_argument("--export", metavar="OUT.onnx", help="export the best checkpoint to ONNX with its contract")
    p.add_argument("--name", default="", help="model name in the exported contract")
    p.add_argument("--export-mirror-average", action="store_true",
                   help="export the network averaged with its prediction on the mirrored image, mirrored back "
                        "(a test-time flip in the graph: cancels left-right biases, twice the inference work)")
    p.set_defaults(func=run)


def load_data(args: argparse.Namespace, width: int, height: int):
    from depth_ros.bags.samples import read_rgb_file
    from depth_ros.training import data as d

    parts = []
    if args.synthetic > 0:
        parts.append(d.synthetic_examples(args.synthetic, args.synthetic_seed, width, height, args.max_depth,
                                          args.workers, recipe_name=args.synthetic_recipe))
    if args.bag and args.depth_topic:
        if not args.image_topic:
            raise ValueError("--depth-topic needs --image-topic (the images the depth is registered to)")
        for bag in args.bag:
            parts.append(d.sensor_examples(Path(bag), args.depth_topic, args.image_topic, args.camera_info_topic,
                                           width, height, args.max_depth))
    images = []
    if args.images:
        images += [read_rgb_file(path) for path in d.image_files(args.images)]
    if args.bag and not args.depth_topic:
        if not args.image_topic:
            raise ValueError("--bag needs --image-topic")
        for bag in args.bag:
            images += d.bag_images(Path(bag), args.image_topic)
    if images:
        if not args.teacher:
            raise ValueError("images without labels: give --teacher MODEL (or --depth-topic for an RGB-D bag)")
        labeller = d.TeacherLabeller(args.teacher, Path(args.cache or Path(args.out) / "label_cache"),
                                     args.teacher_backend)
        parts.append(d.teacher_examples(images, labeller, width, height))
        print(f"teacher {args.teacher}: {len(images)} images, {labeller.computed} labelled now, "
              f"{len(images) - labeller.computed} from the cache")
    if not parts:
        raise ValueError("no training data: give --synthetic N, --images DIR --teacher M, or --bag B --image-topic T")
    return d.concatenate(parts)


def run(args: argparse.Namespace) -> int:
    import json
    import os

    import torch

    from depth_ros.training.train import TrainConfig, build_student, export_onnx, load_checkpoint, train

    width, height = args.input_size
    config = TrainConfig(arch=args.arch, width=width, height=height, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, val_fraction=args.val_fraction, cutmix_p=args.cutmix,
                         perturb=not args.no_perturb, max_depth=args.max_depth, threads=args.threads,
                         feature_weight=args.align_weight,
                         command="depth-ros " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    out = Path(args.out)
    examples = load_data(args, width, height)
    print(f"{len(examples)} examples ({examples.kind} labels{', pseudo' if examples.pseudo else ''}) at "
          f"{width}x{height}; student {args.arch}")
    history = train(config, examples, out, args.resume, init=args.init, align_encoder=args.align_encoder,
                    stop_after=args.stop_after)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 validates and writes
        return 0
    (out / "history.json").write_text(json.dumps([h.__dict__ for h in history], indent=1))
    if args.export:
        best = out / "best.pt" if (out / "best.pt").is_file() else out / "last.pt"
        model = build_student(args.arch)
        model.load_state_dict(load_checkpoint(best)["model"])
        torch.set_grad_enabled(False)
        path = export_onnx(model, args.export, config, examples.kind, args.name,
                           mirror_average=args.export_mirror_average)
        print(f"exported {best} to {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
