"""Command line: ``python -m itrlib {train,eval,data} ...`` — parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import sys

from itrlib.errors import ItrlibError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m itrlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a config (preset name or YAML path)")
    train.add_argument("--config", required=True, help="preset name (see `itrlib presets`) or YAML file")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    train.add_argument("--no-progress", action="store_true")

    ev = commands.add_parser("eval", help="evaluate a run folder under a paper protocol")
    ev.add_argument("--run", required=True, help="run folder, e.g. outputs/runs/baseline")
    ev.add_argument("--protocol", required=True, choices=["f30k1k", "coco1k", "coco5k"])
    ev.add_argument("--data-root", help="precomp folder (default: the run's data.root)")
    ev.add_argument("--split", help="split to evaluate (default: the protocol's split)")
    ev.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ev.add_argument("--device", default="auto")
    ev.add_argument("--no-progress", action="store_true")

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write the embedded synthetic dataset (precomp layout)")
    synth.add_argument("--out", default="data/synthetic")
    synth.add_argument("--size", default="small", choices=["smoke", "small", "medium"])
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--feature-dim", type=int, default=None)
    check = data_commands.add_parser("check", help="validate a precomp folder, scanning every feature")
    check.add_argument("--root", required=True)
    check.add_argument("--splits", nargs="+", default=["train", "dev", "test"])

    commands.add_parser("presets", help="list the packaged config presets")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ItrlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from itrlib.config import load_config
        from itrlib.engine.trainer import train

        summary = train(load_config(args.config, args.overrides), progress=not args.no_progress)
        print(json.dumps(summary, indent=2))
    elif args.command == "eval":
        from itrlib.runs import evaluate_run

        result = evaluate_run(args.run, args.protocol, data_root=args.data_root, split=args.split,
                              checkpoint=args.checkpoint, device=args.device, progress=not args.no_progress)
        print(json.dumps({"protocol": result["protocol"], **result["metrics"]}, indent=2))
    elif args.command == "data" and args.data_command == "synth":
        from itrlib.data.synth import write_synthetic

        path = write_synthetic(args.out, size=args.size, seed=args.seed, feature_dim=args.feature_dim)
        print(f"wrote {path}")
    elif args.command == "data" and args.data_command == "check":
        from itrlib.data.precomp import open_split

        for split in args.splits:
            data = open_split(args.root, split, check_features="full")
            print(f"{split}: {data.n_images} images x {data.n_regions} regions x {data.feature_dim}, "
                  f"{data.n_captions} captions: OK")
    elif args.command == "presets":
        from itrlib.config import list_presets

        print("\n".join(list_presets()))
    return 0
