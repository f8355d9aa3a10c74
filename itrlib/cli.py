"""Command line: ``python -m itrlib {train,eval,data} ...`` — parses arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import sys

from itrlib.config import SCORE_DTYPES, TIE_RULES
from itrlib.errors import ItrlibError
from itrlib.evaluation.protocols import PROTOCOLS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m itrlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a config (preset name or YAML path)")
    train.add_argument("--config", required=True, help="preset name (see `itrlib presets`) or YAML file")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=5")
    train.add_argument("--no-progress", action="store_true")

    ev = commands.add_parser("eval", help="evaluate a run folder under paper protocols")
    ev.add_argument("--run", required=True, help="run folder, e.g. outputs/runs/baseline")
    ev.add_argument("--protocol", required=True, nargs="+", choices=list(PROTOCOLS),
                    help="one or more; protocols on the same split are encoded and scored once")
    ev.add_argument("--data-root", help="precomp folder (default: the run's data.root)")
    ev.add_argument("--split", help="split to evaluate (default: the protocol's split)")
    ev.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ev.add_argument("--device", default="auto")
    ev.add_argument("--ties", choices=TIE_RULES, help="tie rule (default: the run's eval.ties)")
    ev.add_argument("--save-scores", choices=SCORE_DTYPES,
                    help="write scores-<split>.npy beside the eval JSON (default: the run's eval.save_scores)")
    ev.add_argument("--max-pairs-per-block", type=int, help="score block budget (default: eval section/model)")
    ev.add_argument("--no-progress", action="store_true")

    es = commands.add_parser("eval-scores", help="rank a saved (N_img, 5*N_img) score matrix under protocols")
    es.add_argument("scores", help=".npy file with one row per image and one column per caption")
    es.add_argument("--protocol", required=True, nargs="+", choices=list(PROTOCOLS))
    es.add_argument("--ties", choices=TIE_RULES, default="pessimistic")
    es.add_argument("--caps-per-image", type=int, default=5)
    es.add_argument("--out", help="write the results (metrics, per-query ranks) to this JSON file")

    comp = commands.add_parser("composite", help="a run whose scores are a weighted sum of member runs' scores")
    comp.add_argument("--run", required=True, help="folder of the composite run, e.g. outputs/runs/ensemble")
    comp.add_argument("--members", required=True, nargs="+", help="member run folders")
    weights = comp.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=float, nargs="+", help="one weight per member")
    weights.add_argument("--alpha", type=float, help="two members: scores = alpha*S1 + (1-alpha)*S2")
    weights.add_argument("--tune", action="store_true", help="two members: alpha tuned on dev rSum (never test)")
    comp.add_argument("--alpha-step", type=float, default=0.05, help="grid step of --tune")
    comp.add_argument("--protocol", nargs="+", choices=list(PROTOCOLS), default=[])
    comp.add_argument("--data-root", help="precomp folder (default: the members' data.root)")
    comp.add_argument("--ties", choices=TIE_RULES, default="pessimistic")
    comp.add_argument("--device", default="auto")
    comp.add_argument("--no-progress", action="store_true")

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

        config = load_config(args.config, args.overrides)  # a bad config fails before anything heavy loads
        from itrlib.engine.trainer import train

        summary = train(config, progress=not args.no_progress)
        print(json.dumps(summary, indent=2))
    elif args.command == "eval":
        from itrlib.runs import evaluate_run_protocols

        results = evaluate_run_protocols(args.run, args.protocol, data_root=args.data_root, split=args.split,
                                         checkpoint=args.checkpoint, device=args.device, ties=args.ties,
                                         save_scores=args.save_scores,
                                         max_pairs_per_block=args.max_pairs_per_block,
                                         progress=not args.no_progress)
        _print_metrics(results)
    elif args.command == "eval-scores":
        from itrlib.evaluation.protocols import evaluate_scores
        from itrlib.io import atomic_write_json
        from itrlib.scores import read_score_file

        sims = read_score_file(args.scores)
        results = {p: evaluate_scores(sims, p, caps_per_image=args.caps_per_image, ties=args.ties)
                   for p in args.protocol}
        if args.out:
            atomic_write_json(args.out, results)
        _print_metrics(results)
    elif args.command == "composite":
        from itrlib.composite import create_composite

        results = create_composite(args.run, args.members, weights=args.weights, alpha=args.alpha, tune=args.tune,
                                   alpha_step=args.alpha_step, protocols=args.protocol, data_root=args.data_root,
                                   device=args.device, ties=args.ties, progress=not args.no_progress)
        _print_metrics(results)
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


def _print_metrics(results: dict[str, dict]) -> None:
    """One JSON object per protocol: its metrics and how many queries had a tied ground truth."""
    print(json.dumps({name: {**r["metrics"], "tied_queries": r["tied_queries"]} for name, r in results.items()},
                     indent=2))
