"""`kmesh-node` command line: parse arguments, hand each subcommand to the module that owns it.

Each subcommand is implemented as `<module>.<name>_command(args) -> int` (exit status), and
imported lazily so that `kmesh-node preflight` works even where bcc cannot load.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

DEFAULT_BPFFS = "/sys/fs/bpf/kmesh_node"
DEFAULT_METRICS = "127.0.0.1:15020"

# subcommand -> (module, function)
HANDLERS = {
    "run": ("kmesh_node.agent", "run_command"),
    "status": ("kmesh_node.agent", "status_command"),
    "uninstall": ("kmesh_node.datapath", "uninstall_command"),
    "top": ("kmesh_node.stats", "top_command"),
    "preflight": ("kmesh_node.preflight", "preflight_command"),
    "bench": ("kmesh_node.bench", "bench_command"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmesh-node", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load the datapath and follow a source of services")
    run.add_argument(
        "--source",
        required=True,
        help="manifests:DIR (watched YAML directory), or kubernetes / kubernetes:KUBECONFIG "
        "(API list + watch)",
    )
    run.add_argument("--cgroup", required=True, help="cgroup v2 directory to attach to")
    run.add_argument("--bpffs", default=DEFAULT_BPFFS, help="pin directory (default %(default)s)")
    run.add_argument("--metrics", default=DEFAULT_METRICS, help="HOST:PORT for Prometheus text")
    run.add_argument("--lb", choices=["random", "round_robin"], default="random")
    run.add_argument(
        "--stress-loops",
        type=int,
        default=0,
        help="experiment knob: a bounded busy loop of N iterations in connect4 (CPU suites)",
    )
    run.add_argument(
        "--accelerate",
        action="store_true",
        help="sockmap acceleration: sockops + sk_msg hand same-node TCP payload straight to "
        "the peer socket (off: a previous run's acceleration is removed)",
    )

    status = sub.add_parser("status", help="what is loaded, pinned and attached")
    status.add_argument("--bpffs", default=DEFAULT_BPFFS)
    status.add_argument("--json", action="store_true")

    top = sub.add_parser("top", help="eBPF CPU and map memory, like bpftop but with inner maps")
    top.add_argument("--bpffs", default=DEFAULT_BPFFS)
    top.add_argument("--json", action="store_true")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    top.add_argument("--count", type=int, default=1, help="number of samples (0 = forever)")

    preflight = sub.add_parser("preflight", help="check the kernel and host; name each fix")
    preflight.add_argument("--json", action="store_true")
    preflight.add_argument("--bpffs", default=DEFAULT_BPFFS, help="pin directory to check")
    preflight.add_argument(
        "--accelerate",
        action="store_true",
        help="also require what `run --accelerate` needs (sockhash, sk_msg, sockops)",
    )

    uninstall = sub.add_parser("uninstall", help="detach every program and unpin everything")
    uninstall.add_argument("--bpffs", default=DEFAULT_BPFFS)

    bench = sub.add_parser("bench", help="record datapath/agent benchmarks as JSON")
    bench.add_argument("--out", required=True, help="results JSON file to write")
    bench.add_argument("--quick", action="store_true", help="smaller sizes (CI)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module_name, func_name = HANDLERS[args.command]
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # our errors carry what was wrong and the fix
        print(f"kmesh-node {args.command}: {exc}", file=sys.stderr)
        return 1
