"""`depth-ros export`, `build-engine` and `verify`: checkpoint -> ONNX -> TensorRT engine, and backend parity."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _size(text: str) -> tuple[int, int]:
    """'640x480' -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from exc
    return width, height


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _batch(text: str) -> int | None:
    """'dynamic' -> None (a dynamic batch dimension), 'N' -> N."""
    if text.strip().lower() == "dynamic":
        return None
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a batch size >= 1 or 'dynamic', got {text!r}") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from depth_ros.backends.export import export_onnx, size_for_camera
    from depth_ros.core.contract import ModelContract
    from depth_ros.nets.checkpoints import load_depth_anything_v2

    if args.dynamic:
        input_size = None
    elif args.camera is not None:
        input_size = size_for_camera(*args.camera, short_side=args.short_side)
    elif args.height and args.width:
        input_size = (args.height, args.width)
    else:
        raise ValueError("give the input size: --camera WxH (the official rule for that aspect ratio), "
                         "--height/--width (multiples of 14), or --dynamic")
    if input_size is not None and (input_size[0] % 14 or input_size[1] % 14):
        raise ValueError(f"input size {input_size[0]}x{input_size[1]} (HxW): both sides must be multiples of 14")
    if args.arch:  # a registered architecture (e.g. the project's students): state dict + contract file
        import torch

        from depth_ros.nets import build

        model = build(args.arch)
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True), strict=True)
        if not args.contract:
            raise ValueError("--arch needs --contract JSON_FILE (the model's output kind and preprocessing)")
        contract = ModelContract.from_json(Path(args.contract).read_text())
    else:
        model = load_depth_anything_v2(args.checkpoint, args.encoder, args.head, args.max_depth, args.depth)
        encoder = {384: "vits", 768: "vitb", 1024: "vitl"}[model.config.vit.dim]
        height, width = input_size or (518, 518)
        contract = ModelContract.from_dict(model.contract_fields(encoder, height, width))
    report = export_onnx(model, contract, args.out, input_size, simplify=not args.no_simplify, batch=args.batch)
    print(report.summary())
    return 0


def _profile(args: argparse.Namespace) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    given = [args.min, args.opt, args.max]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise ValueError("a dynamic profile needs all of --min, --opt and --max (WIDTHxHEIGHT each)")
    return tuple((h, w) for w, h in given)  # type: ignore[return-value]


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from depth_ros.backends.tensorrt_backend import (
        BuildSettings,
        EngineBuilder,
        batch_range,
        default_cache_dir,
        nchw_profile,
        probe,
    )

    reason = probe()
    if reason is not None:
        raise RuntimeError(f"cannot build a TensorRT engine here: {reason}")
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    timing = Path(args.timing_cache) if args.timing_cache else cache_dir / "timing.cache"
    profile = _profile(args)
    settings = BuildSettings(args.precision, None, timing, max_batch=args.max_batch, opt_batch=args.opt_batch or 0)
    builder = EngineBuilder(Path(args.model), settings, cache_dir)
    if not builder.signature.dynamic_batch and (args.max_batch > 1 or args.opt_batch):
        print(f"{args.model} has a fixed batch of {builder.signature.static_shape()[0]}: --max-batch and "
              "--opt-batch do not apply (export it with --batch dynamic)")
    batch_range(builder.signature, settings)  # 1 <= opt <= max, before anything is built
    if not builder.signature.dynamic:
        if profile is not None or args.camera is not None:
            print(f"{args.model} has a fixed input size {builder.signature.input_dims[2:]}: --min/--opt/--max "
                  "and --camera do not apply")
        key, engine = builder.ensure()
    else:
        if args.camera is not None:  # the size the node plans for this camera: the node finds this engine
            if profile is not None:
                raise ValueError("give either --camera or --min/--opt/--max")
            from depth_ros.core.preprocess import plan_input

            width, height = args.camera
            geometry = plan_input(height, width, builder.contract.input, None)
            size = (geometry.net_height, geometry.net_width)
            profile = (size, size, size)
        if profile is None:
            raise ValueError(f"{args.model} has a dynamic input {builder.signature.input_dims}: give --camera WxH "
                             "(the size the node will use for that camera) or --min/--opt/--max")
        nchw_profile(builder.signature, profile)  # min <= opt <= max, before anything is built
        builder.settings = replace(settings, profile=profile)
        key, engine = builder.ensure()  # exactly this range (not a narrower cached one)
    print(f"engine: {engine}\ninput: {key.input_shape}\nprecision: {key.precision} ({key.typing}), TensorRT "
          f"{key.tensorrt_version} on {key.gpu_name}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from depth_ros.backends import BACKENDS, BackendOptions, create_backend
    from depth_ros.core.contract import read_contract_from_onnx_metadata
    from depth_ros.core.preprocess import output_to_map

    runs: list[tuple[str, Path]] = []
    if args.checkpoint:
        runs.append(("torch", Path(args.checkpoint)))
    for name in sorted(BACKENDS):
        if name != "torch" and BACKENDS[name].probe() is None:
            runs.append((name, Path(args.model)))
    for name in sorted(set(BACKENDS) - {n for n, _ in runs}):
        reason = BACKENDS[name].probe() or "needs --checkpoint (the torch reference runs checkpoints)"
        print(f"{name:12s} skipped: {reason}")
    onnx_backend = create_backend(args.model, "onnxruntime")  # the ONNX file decides the input size
    contract = read_contract_from_onnx_metadata(onnx_backend.metadata(), str(args.model))
    size = onnx_backend.fixed_input_size or (contract.input.height, contract.input.width)
    tensor = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
    reference: np.ndarray | None = None
    for name, path in runs:
        backend = create_backend(path, name, BackendOptions(device=args.device))
        out = output_to_map(backend.infer(tensor))
        start = time.perf_counter()
        for _ in range(args.runs):
            backend.infer(tensor)
        latency = (time.perf_counter() - start) / max(1, args.runs) * 1e3
        if reference is None:
            reference = out
            print(f"{name:12s} ({backend.device}) reference; max |output| {np.abs(out).max():.4g}; "
                  f"{latency:.2f} ms per inference")
            continue
        diff = np.abs(out.astype(np.float64) - reference)
        print(f"{name:12s} ({backend.device}) max |diff| {diff.max():.3g} (relative "
              f"{diff.max() / max(np.abs(reference).max(), 1e-12):.3g}), mean |diff| {diff.mean():.3g}; "
              f"{latency:.2f} ms per inference")
    return 0


def add_model_tool_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="Depth Anything V2 checkpoint (.pth or Hugging Face dir) -> ONNX with contract")
    p.add_argument("checkpoint", help="official .pth, a Hugging Face model directory, or a state dict with --arch")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--encoder", choices=("vits", "vitb", "vitl"), help="default: from the weights' width")
    p.add_argument("--head", choices=("relative", "metric"), help="default: relative (HF: its config)")
    p.add_argument("--max-depth", type=float, help="metric head: 20 (Hypersim, indoor) or 80 (VKITTI, outdoor)")
    p.add_argument("--camera", type=_size, metavar="WxH", help="pick the input size for this camera's aspect ratio")
    p.add_argument("--short-side", type=int, default=518, help="with --camera: the network's shorter side")
    p.add_argument("--height", type=int, help="fixed network input height (multiple of 14)")
    p.add_argument("--width", type=int, help="fixed network input width (multiple of 14)")
    p.add_argument("--dynamic", action="store_true", help="dynamic height/width (architectures that allow it)")
    p.add_argument("--batch", type=_batch, default=1, metavar="N|dynamic",
                   help="the batch dimension: 1 (default, what the node runs), a fixed N, or 'dynamic' (dim 0 named "
                   "'batch' on the input and every output: ONNX Runtime runs any batch in one pass, TensorRT the "
                   "range given to build-engine --max-batch)")
    p.add_argument("--arch", help="a registered architecture name (depth_ros.nets.REGISTRY), e.g. a student")
    p.add_argument("--contract", help="with --arch: the model contract JSON")
    p.add_argument("--depth", type=int, help=argparse.SUPPRESS)  # reduced-depth test models
    p.add_argument("--no-simplify", action="store_true", help="skip graph simplification")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("build-engine", help="ONNX -> cached TensorRT engine for this GPU (FP16 by default)")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    p.add_argument("--cache-dir", help="engine cache directory (default $DEPTH_ROS_ENGINE_CACHE or "
                   "~/.cache/depth_ros/engines; the node's engine_cache_dir)")
    p.add_argument("--timing-cache", help="timing cache file (default: timing.cache in the cache directory)")
    p.add_argument("--camera", type=_size, metavar="WxH", help="dynamic inputs: build for the network input size "
                   "the node picks for this camera resolution (the engine the node then finds)")
    for name in ("min", "opt", "max"):
        p.add_argument(f"--{name}", type=_size, metavar="WxH", help=f"dynamic inputs: the profile's {name} size "
                       "(network input, WIDTHxHEIGHT)")
    p.add_argument("--max-batch", type=_positive, default=1, metavar="N",
                   help="a model exported with --batch dynamic: the engine runs every batch 1..N in one pass "
                   "(default 1); the node's engine_max_batch finds it")
    p.add_argument("--opt-batch", type=_positive, metavar="N",
                   help="with --max-batch: the batch the kernels are tuned for (default: the max batch)")
    p.set_defaults(func=_cmd_build_engine)

    p = sub.add_parser("verify", help="run a model through every backend available here: difference and latency")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--checkpoint", help="the checkpoint it came from: the torch backend becomes the reference")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--runs", type=int, default=10, help="timed inferences per backend")
    p.set_defaults(func=_cmd_verify)
