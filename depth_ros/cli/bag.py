"""`depth-ros bag process|play|record`: argument parsing and process-level behaviour (exit codes,
Ctrl-C). The work lives in depth_ros.bags.process and depth_ros.bags.play."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXIT_INTERRUPTED = 130
PLAYER_NODE = "depth_ros_bag_play"  # services /depth_ros_bag_play/pause, ... (rosbag2's node: rosbag2_player)
ACK_TIMEOUT_S = 10.0  # reliable playback: how long the last messages may take to be acknowledged


def _err(command: str, message: str) -> None:
    print(f"depth-ros bag {command}: {message}", file=sys.stderr)


def cmd_process(args: argparse.Namespace) -> int:
    from depth_ros.bags.io import BagError
    from depth_ros.bags.process import ConfigError, print_result, process_bag

    def log(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    try:
        result = process_bag(args.bag, args.out, args.image_topic, args.camera_info_topic, args.output_prefix,
                             args.params_file, args.param, overwrite=args.overwrite,
                             progress=False if args.quiet else None, log=log, confidence=args.confidence)
    except ConfigError as exc:
        _err("process", f"configuration error: {exc}")
        return 2
    except BagError as exc:
        _err("process", f"{exc}; nothing written to {args.out}")
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _err("process", f"interrupted; nothing written to {args.out} (the partial output was removed)")
        return EXIT_INTERRUPTED
    print_result(result, log)
    return 0


def _remaps(items: list[str]) -> dict[str, str]:
    remap = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"--remap {item}: write FROM:=TO")
        remap[source] = target
    return remap


def _clock_hz(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in Hz (put the bag before a bare --clock)") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"the /clock rate must be > 0 Hz, got {text}")
    return value


def _spin_in_background(rclpy: Any, node: Any) -> tuple[Any, threading.Thread]:
    """Serve the node's services (pause/resume) from a thread while the main thread plays."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass  # Ctrl-C shut the context down: the main thread ends the process
        except Exception:
            if rclpy.ok():
                raise

    thread = threading.Thread(target=spin, name="bag_play_services", daemon=True)
    thread.start()
    return executor, thread


def _ros_session(name: str):  # noqa: ANN202 - (rclpy module, node)
    import rclpy

    rclpy.init(args=[])
    return rclpy, rclpy.create_node(name)


def cmd_play(args: argparse.Namespace) -> int:
    from depth_ros.bags.play import Player, PlayOptions

    options = PlayOptions(topics=args.topics or None, rate=args.rate, loop=args.loop, start_offset_s=args.start_offset,
                          reliable=args.reliable, remap=_remaps(args.remap), clock_hz=args.clock or 0.0,
                          start_paused=args.start_paused)
    rclpy, node = _ros_session(PLAYER_NODE)
    executor = spinner = None
    try:
        player = Player(node, args.bag, options, log=lambda line: print(line, flush=True))
        player.create_control_services()
        executor, spinner = _spin_in_background(rclpy, node)
        print(f"bag play: {Path(args.bag)}: {', '.join(player.topics)} at {args.rate}x"
              f"{' (loop)' if args.loop else ''}{f', /clock at {args.clock:g} Hz' if args.clock else ''}"
              f"{' (paused)' if args.start_paused else ''}; services {node.get_fully_qualified_name()}/"
              "{pause,resume,toggle_paused,is_paused}", flush=True)
        if args.wait_for_subscribers > 0 and not player.wait_for_subscribers(args.wait_for_subscribers, settle_s=1.0):
            _err("play", f"no subscriber on every topic within {args.wait_for_subscribers:.0f} s")
            return 1
        count = player.play()
        if not player.wait_for_all_acked(ACK_TIMEOUT_S):
            print(f"bag play: warning: not every reliable subscriber acknowledged within {ACK_TIMEOUT_S:.0f} s",
                  file=sys.stderr, flush=True)
        print(f"bag play: published {count} messages", flush=True)
        return 0
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a looping playback ends
    finally:
        if executor is not None and spinner is not None:
            executor.shutdown(timeout_sec=5.0)
            spinner.join(timeout=5.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def cmd_record(args: argparse.Namespace) -> int:
    from depth_ros.bags.io import BagWriter
    from depth_ros.bags.play import Recorder, discover_types

    out = Path(args.out)
    if out.exists():
        _err("record", f"{out} exists; choose another path")
        return 1
    rclpy, node = _ros_session("depth_ros_bag_record")
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            types = discover_types(node, args.topics, args.discovery_timeout, lambda: stop["now"])
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        with BagWriter(out) as writer:
            recorder = Recorder(node, writer, types, reliable=True if args.reliable else None)
            print(f"bag record: recording {len(types)} topics to {out}", flush=True)
            end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
            while not stop["now"] and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.05)
            recorder.close()
        print(f"bag record: wrote {out}: " + ", ".join(f"{t} {n}" for t, n in recorder.counts.items()), flush=True)
        return 0
    except TimeoutError as exc:
        _err("record", str(exc))
        return 1
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def add_parser(sub: argparse._SubParsersAction) -> None:
    from depth_ros.bags.play import DEFAULT_CLOCK_HZ  # no ROS imports at module level

    bag = sub.add_parser("bag", help="process, play and record bags").add_subparsers(dest="bag_command", required=True)

    p = bag.add_parser("process", help="run the node's pipeline over a bag offline (no DDS), write a rosbag2 (MCAP)",
                       description="Output topics: <camera namespace>/depth, /depth/camera_info, /depth/colored, "
                       "/points, where the camera namespace is that of the image's CameraInfo topic "
                       "(<ns>/camera_info or <ns>/info/camera_info); --output-prefix replaces it.")
    p.add_argument("bag", help="rosbag2 folder or file (sqlite3 or MCAP) or a ROS 1 .bag")
    p.add_argument("out", help="output rosbag2 folder (written to OUT.partial-<pid> first, renamed when complete)")
    p.add_argument("--image-topic", action="append", default=[], metavar="TOPIC",
                   help="Image or CompressedImage topic (repeat for several cameras; default: auto-detect)")
    p.add_argument("--camera-info-topic", action="append", default=[], metavar="TOPIC",
                   help="its CameraInfo topic, one per --image-topic (default: paired by namespace)")
    p.add_argument("--output-prefix", action="append", default=[], metavar="NS",
                   help="namespace of the outputs, one per camera (default: the camera's namespace)")
    p.add_argument("--params-file", help="node parameters (ros__parameters YAML; default: config/depth.yaml)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="parameter override")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (only once the run succeeded)")
    p.add_argument("--confidence", action="store_true", help="also write <ns>/depth/confidence (32FC1 in [0, 1])")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=cmd_process)

    p = bag.add_parser("play", help="publish a bag on live topics with its recorded timing")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true", help="play again and again until Ctrl-C")
    p.add_argument("--topics", nargs="+", default=[], metavar="TOPIC", help="only these topics")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip the bag's first S seconds")
    p.add_argument("--reliable", action="store_true", help="reliable publishers (default: best effort, sensor data)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="publish a bag topic under "
                   "another name")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds until every played topic has a subscriber")
    p.add_argument("--clock", type=_clock_hz, nargs="?", const=DEFAULT_CLOCK_HZ, default=None, metavar="HZ",
                   help=f"publish the bag's time at the playback position on /clock (rosgraph_msgs/msg/Clock) at HZ "
                   f"(default {DEFAULT_CLOCK_HZ:g}) and before each message, for nodes with use_sim_time: true")
    p.add_argument("--start-paused", action="store_true",
                   help="start paused; resume with the ~/resume or ~/toggle_paused service (std_srvs/srv/Trigger)")
    p.set_defaults(func=cmd_play)

    p = bag.add_parser("record", help="record live topics to a rosbag2 (MCAP) until Ctrl-C or --duration")
    p.add_argument("out")
    p.add_argument("--topics", nargs="+", required=True, metavar="TOPIC")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (0 = Ctrl-C)")
    p.add_argument("--reliable", action="store_true", help="reliable subscriptions (default: like ros2 bag record, "
                   "reliable for topics whose publishers all offer reliable, else best effort)")
    p.add_argument("--discovery-timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait for the topics to be advertised (their types come from the graph)")
    p.set_defaults(func=cmd_record)
