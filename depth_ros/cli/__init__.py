"""The `depth-ros` command line: every subcommand's arguments, each run in its own module here.

The top layer: it may import every other layer; nothing imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_info(args: argparse.Namespace) -> int:
    from depth_ros.backends import create_backend
    from depth_ros.core.contract import read_contract_from_onnx_metadata
    from depth_ros.resources import resolve_model_path

    path = resolve_model_path(args.model)
    backend = create_backend(path, args.backend)
    contract = read_contract_from_onnx_metadata(backend.metadata(), str(path))
    print(f"model:    {path}")
    print(f"backend:  {backend.name} ({backend.device}); input size: "
          f"{'dynamic' if backend.fixed_input_size is None else 'x'.join(map(str, backend.fixed_input_size[::-1]))}")
    print("contract: " + json.dumps(json.loads(contract.to_json()), indent=2, sort_keys=True))
    return 0


def _cmd_contract(args: argparse.Namespace) -> int:
    import onnx

    from depth_ros.backends.graph_models import set_contract
    from depth_ros.core.contract import METADATA_KEY, ModelContract

    model = onnx.load(args.model)
    if args.set is None:
        current = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
        print(current if current is not None else f"{args.model} has no depth_ros contract")
        return 0 if current is not None else 1
    contract = ModelContract.from_json(Path(args.set).read_text())
    set_contract(model, contract)
    onnx.save(model, args.output or args.model)
    print(f"wrote the contract into {args.output or args.model}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from depth_ros.cli.demo import print_summary, run_demo

    out = Path(args.out)
    result = run_demo(out, loops=args.loops, rate_hz=args.rate, model=args.model)
    print_summary(result, out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depth-ros", description="depth_ros tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="show a model's contract and how it loads")
    p.add_argument("model", help="an .onnx path, a file in the package's models/, or 'default'")
    p.add_argument("--backend", default="auto")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("contract", help="show or set the depth_ros contract embedded in an ONNX model")
    p.add_argument("model")
    p.add_argument("--set", metavar="JSON_FILE", help="embed this contract (validated first)")
    p.add_argument("--output", help="write to this file instead of changing MODEL in place")
    p.set_defaults(func=_cmd_contract)

    p = sub.add_parser("demo", help="play the bundled D435 sample into a live depth_node and record it")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--loops", type=int, default=10, help="times the sample frame is played")
    p.add_argument("--rate", type=float, default=5.0, help="frames per second")
    p.add_argument("--model", default=None, help="model parameter for the node (default: config/depth.yaml's)")
    p.set_defaults(func=_cmd_demo)

    from depth_ros.cli.eval import add_arguments as add_eval_arguments
    from depth_ros.cli.eval import run_from_args as run_eval

    p = sub.add_parser("eval", help="score a model or a processed bag against ground-truth depth (AbsRel, RMSE, "
                       "delta, boundary F1; CSV, JSON and plots)")
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)

    from depth_ros.cli.bag import add_parser as add_bag_parser

    add_bag_parser(sub)

    from depth_ros.cli.train import add_parser as add_train_parser

    add_train_parser(sub)

    from depth_ros.cli.model_tools import add_model_tool_parsers

    add_model_tool_parsers(sub)  # export, build-engine, verify

    p = sub.add_parser("bench", help="measure per-stage and end-to-end latency, delivery and soak (prints numbers)")
    p.add_argument("--model", action="append", dest="models",
                   help="models to measure (repeatable; default: null and default)")
    p.add_argument("--size", action="append", dest="sizes", choices=("640x480", "1280x720"),
                   help="image sizes (repeatable; default both)")
    p.add_argument("--frames", type=int, default=200, help="frames per measurement")
    p.add_argument("--rate", type=float, default=None, help="input rate of the end-to-end runs (Hz; default 30, "
                   "15 with --cameras)")
    p.add_argument("--e2e", action="store_true",
                   help="also publisher -> depth_node -> subscriber through DDS (the first --model)")
    p.add_argument("--delivery", action="store_true",
                   help="also delivery to a reliable and a best-effort subscriber process at 30 Hz, with and without "
                        "the shipped Fast DDS profile, and the --slow-subscriber runs")
    p.add_argument("--slow-subscriber", nargs="?", const="all", default="", metavar="MODES",
                   help="also delivery with one more reliable subscriber attached: none,slow,stopped (comma list; "
                        "'all' or no value = all three): slow takes 0.5 s per message, stopped is SIGSTOPped "
                        "during the stream (part of --delivery)")
    p.add_argument("--soak", type=int, default=0, metavar="FRAMES", help="also a soak run of FRAMES frames")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID for the DDS runs (default: one no other depth_ros process here holds)")
    p.add_argument("--edges", action="store_true",
                   help="only the depth-edge filter: flying pixels removed and true surfaces kept on exact depth "
                        "with network-like predictions, and its cost per 640x480 frame")
    p.add_argument("--temporal", action="store_true",
                   help="only the temporal filter: noise on a static camera, sudden changes and moving cameras on "
                        "synthetic sequences with exact depth")
    p.add_argument("--confidence", action="store_true",
                   help="only depth/confidence: the error of the more confident half of the pixels against the "
                        "less confident half, on synthetic sequences and the real frames, and its cost")
    p.add_argument("--cameras", type=int, default=0, metavar="N",
                   help="only several cameras: one depth_node serving N cameras against N depth_nodes of one camera, "
                        "in one run (delivered fraction per camera, latency, resident memory; --frames per camera)")
    p.add_argument("--batch-model", metavar="ONNX",
                   help="--cameras: also the one-node setup with this model (a dynamic-batch export: what batching "
                        "buys)")
    p.add_argument("--json", dest="json_path", help="write the results as JSON here")
    p.set_defaults(func=_cmd_bench)
    return parser


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.cameras:
        from depth_ros.cli import bench_cameras

        results = bench_cameras.run((args.models or ["default"])[0], args.cameras, args.rate or 15.0, args.frames,
                                    domain_id=args.domain_id, batch_model=args.batch_model)
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(results, indent=2))
        return 0
    if args.edges or args.temporal or args.confidence:
        from depth_ros.cli import bench_confidence, bench_edges, bench_temporal

        focused = bench_edges if args.edges else bench_temporal if args.temporal else bench_confidence
        results = focused.run()
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(results, indent=2))
        return 0
    from depth_ros.cli.bench import run
    from depth_ros.ros.dds import reserve_domain_id

    domain_id = args.domain_id if args.domain_id is not None else reserve_domain_id()
    run(args.models or ["null", "default"], args.sizes or ["640x480", "1280x720"], args.frames, args.e2e,
        args.delivery, args.soak, args.rate or 30.0, args.json_path, domain_id,
        args.slow_subscriber)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError, RuntimeError, KeyError, TimeoutError) as exc:
        print(f"depth-ros {args.command}: {exc}", file=sys.stderr)
        return 1

