"""Command line of itrlib: parses arguments and calls the library (``python -m itrlib --help`` lists the commands).

Only light modules are imported at the top (config, precomp split names, protocol names): each command imports
what it runs when it runs, so ``--help`` and argument errors answer at once, without loading torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from itrlib.config import SCORE_DTYPES, TIE_RULES
from itrlib.data.precomp import SPLITS
from itrlib.data.synth_sizes import DEFAULT_FEATURE_DIM, SIZES
from itrlib.errors import DataError, ItrlibError
from itrlib.evaluation.protocols import PROTOCOLS

PROG = "python -m itrlib"
DESCRIPTION = f"""\
itrlib: image-text retrieval reproducibility suite (train, evaluate, combine runs, build and check data).

Here "{PROG}" means the project's .venv/bin/python -m itrlib when the project was installed with make \
(make venv); the console script "itrlib" is the same command."""
EPILOG = f'Run "{PROG} COMMAND --help" for the options of a command.'


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; paragraphs of descriptions are wrapped separately.

    An option whose help already says "(default: ...)", a required option, and an option whose default is
    None or False (its help says what happens without it) get no automatic "(default: ...)".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default:" in text or action.required
                or any(action.default is value for value in (None, False, argparse.SUPPRESS))):
            return text
        return super()._get_help_string(action)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            # argparse measures subcommand names one indent short, which pushes e.g. eval-scores' line down
            longest = max(map(len, action.choices)) + self._current_indent + self._indent_increment
            self._action_max_length = max(self._action_max_length, longest)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                         subsequent_indent=indent) for p in text.split("\n\n"))


def add_command(commands: argparse._SubParsersAction, name: str, summary: str,
             details: str = "") -> argparse.ArgumentParser:
    """A subcommand: ``summary`` is its one line in the parent's list, ``summary + details`` its description."""
    description = f"{summary[0].upper()}{summary[1:]}." + (f"\n\n{details}" if details else "")
    return commands.add_parser(name, help=summary, description=description, formatter_class=HelpFormatter)


def _add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="print no progress (default: live bars in a terminal, plain lines when the output "
                             "goes to a log or notebook; ITRLIB_PROGRESS=bars|lines|off chooses)")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...")


def _add_ties(parser: argparse.ArgumentParser, default: str | None, default_text: str = "") -> None:
    text = f" (default: {default_text})" if default_text else ""
    parser.add_argument("--ties", choices=TIE_RULES, default=default,
                        help="tie rule: pessimistic ranks a ground truth after every item with an equal score; "
                             f"stable follows the official code's stable sort{text}")


def _add_protocols(parser: argparse.ArgumentParser, required: bool = True) -> None:
    optional = "" if required else " (default: none; needed by --metrics recall)"
    parser.add_argument("--protocol", required=required, nargs="+", choices=list(PROTOCOLS), metavar="PROTOCOL",
                        help=f"one or more of {', '.join(PROTOCOLS)}; protocols on the same split are ranked from "
                             f"one score matrix{optional}")


def _add_max_pairs(parser: argparse.ArgumentParser, default_text: str) -> None:
    parser.add_argument("--max-pairs-per-block", type=int, metavar="N",
                        help=f"image-caption pairs scored per block, a memory budget (default: {default_text})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    train = add_command(commands, "train", "train a model from a config (preset name or YAML)",
                        "Writes the run folder output_dir/name; a folder holding last.pt is resumed.\n\n"
                        "On several processes (DistributedDataParallel; gloo on CPU, NCCL on GPUs): the same "
                        "command with 'torchrun --nproc_per_node=N' in place of 'python'; train.batch_size is then "
                        "the global batch (a multiple of N), rank 0 writes the run folder, and the run resumes on "
                        "any N.")
    train.add_argument("--config", required=True,
                       help=f"preset name (list them with: {PROG} presets) or path of a YAML config file")
    train.add_argument("overrides", nargs="*", metavar="section.key=value",
                       help="config overrides applied after the config, e.g. train.epochs=5 (default: none)")
    _add_no_progress(train)

    ev = add_command(commands, "eval", "evaluate a run folder under paper protocols",
                     "A trained run or a composite run. Writes eval-PROTOCOL.json in the run folder and prints the "
                     "metrics.")
    ev.add_argument("--run", required=True, help="run folder, e.g. outputs/embedded/runs/vse")
    _add_protocols(ev, required=False)
    ev.add_argument("--metrics", nargs="+", choices=("recall", "eccv"),
                    help="recall: R@1/5/10 and rSum under each --protocol (needs --protocol); eccv: ECCV Caption "
                         "mAP@R, R-Precision, R@1 and CxC R@1/5/10 on the COCO 5K test split (testall_ids.txt: COCO "
                         "image ids), written to eccv-testall.json; needs the eccv-caption package "
                         "(pip install -e \".[eccv]\") (default: recall)")
    ev.add_argument("--data-root", help="precomp folder (default: the run's data.root)")
    ev.add_argument("--split", help="split to evaluate (default: the protocol's split)")
    ev.add_argument("--checkpoint", choices=("best", "last"),
                    help="trained runs: best (best.pt, best dev rSum) or last (last.pt, the last epoch) "
                         "(default: best)")
    _add_device(ev)
    _add_ties(ev, None, "the run's eval.ties")
    ev.add_argument("--save-scores", choices=SCORE_DTYPES,
                    help="write scores-SPLIT.npy in the run folder with this dtype, or none "
                         "(default: the run's eval.save_scores)")
    _add_max_pairs(ev, "the run's eval.max_pairs_per_block, else the model's own")
    ev.add_argument("--rerank-with", metavar="RUN",
                    help="two-stage retrieval: this run (e.g. a VSE∞ or AFA run, or a composite) shortlists "
                         "--shortlist items per query and --run reranks only those; written to "
                         "two-stage-PROTOCOL-RUN-mM.json in --run's folder (default: none, every pair scored)")
    ev.add_argument("--shortlist", type=int, metavar="M",
                    help="items per query that --rerank-with shortlists (default: none; required by --rerank-with)")
    _add_no_progress(ev)

    off = add_command(commands, "eval-official", "evaluate an official checkpoint of the authors",
                      "Converts an official USER or VSE∞ checkpoint (the authors' released .pth) to the "
                      "suite's model, built from the user_f30k or vse_f30k preset with the checkpoint's sizes, "
                      "evaluates it as a run is evaluated and prints the metrics (a JSON file only with --out).")
    off.add_argument("--arch", required=True, choices=["user", "vse"],
                     help="architecture of the checkpoint: user (zhangy0822/USER) or vse (woodfrog/vse_infty "
                          "VSE∞)")
    off.add_argument("--checkpoint", required=True, metavar="FILE",
                     help="the official checkpoint file, e.g. model_best.pth")
    _add_protocols(off)
    off.add_argument("--data-root", required=True, help="precomp folder to evaluate on")
    off.add_argument("--bert-path", required=True,
                     help="local BERT folder the checkpoint was trained with, e.g. /models/bert-base-uncased")
    off.add_argument("--split", help="split to evaluate (default: the protocol's split)")
    _add_device(off)
    _add_ties(off, None, "the preset's eval.ties")
    _add_max_pairs(off, "the preset's eval.max_pairs_per_block, else the model's own")
    off.add_argument("--out", metavar="FILE",
                     help="write the results (protocol -> metrics, per-query ranks, source) to this JSON file "
                          "(default: print the metrics only)")
    _add_no_progress(off)

    cmp = add_command(commands, "compare", "is run A's rSum higher than run B's? (paired bootstrap)",
                      "Reads eval-PROTOCOL.json of both run folders (evaluate them first) and resamples the test "
                      "images, each with its captions, the same way for both runs. Prints the rSum difference A - B "
                      "and its percentile interval; an interval that holds 0 is not significant.")
    cmp.add_argument("--run", required=True, nargs=2, metavar=("A", "B"), help="two evaluated run folders")
    _add_protocols(cmp)
    cmp.add_argument("--samples", type=int, default=2000, metavar="N", help="bootstrap resamples")
    cmp.add_argument("--level", type=float, default=0.95, help="coverage of the interval")
    cmp.add_argument("--seed", type=int, default=0, help="seed of the resamples (same seed, same interval)")

    es = add_command(commands, "eval-scores", "rank a saved score matrix under protocols",
                     "The matrix has one row per image and one column per caption (N_img, 5*N_img).")
    es.add_argument("scores", help=".npy file with one row per image and one column per caption")
    _add_protocols(es)
    _add_ties(es, "pessimistic")
    es.add_argument("--caps-per-image", type=int, default=5, metavar="N",
                    help="captions per image: column c belongs to image c // N")
    es.add_argument("--out", help="write the results (metrics, per-query ranks) to this JSON file "
                                  "(default: print the metrics only)")

    comp = add_command(commands, "composite", "combine member runs' scores into a composite run",
                       "The composite run's scores are a weighted sum of its member runs' scores.")
    comp.add_argument("--run", required=True, help="folder of the composite run, e.g. outputs/runs/ensemble")
    comp.add_argument("--members", required=True, nargs="+", metavar="RUN", help="two or more member run folders")
    weights = comp.add_mutually_exclusive_group(required=True)
    one_of = "exactly one of --weights, --alpha, --tune is required"
    weights.add_argument("--weights", type=float, nargs="+", metavar="W",
                         help=f"one weight per member, in the order of --members ({one_of})")
    weights.add_argument("--alpha", type=float,
                         help=f"two members: scores = alpha*S1 + (1-alpha)*S2 ({one_of})")
    weights.add_argument("--tune", action="store_true",
                         help=f"two members: alpha tuned on dev rSum, never on test ({one_of})")
    comp.add_argument("--alpha-step", type=float, default=0.05, help="grid step of --tune")
    comp.add_argument("--protocol", nargs="+", choices=list(PROTOCOLS), default=[], metavar="PROTOCOL",
                      help=f"evaluate under these protocols ({', '.join(PROTOCOLS)}) "
                           "(default: none, only the composite's definition is written)")
    comp.add_argument("--data-root", help="precomp folder (default: the members' data.root)")
    _add_ties(comp, "pessimistic")
    _add_device(comp)
    _add_no_progress(comp)

    data = add_command(commands, "data", "dataset tools: synth, check, clip-features, labels")
    data_commands = data.add_subparsers(dest="data_command", required=True, title="commands", metavar="COMMAND")
    sizes = "; ".join(f"{name}: " + "/".join(str(n) for n in split_sizes.values())
                      for name, split_sizes in SIZES.items())
    synth = add_command(data_commands, "synth", "write the embedded synthetic dataset (precomp layout)",
                        "Not natural images: numbers measured on it are not comparable to COCO/Flickr30K.")
    synth.add_argument("--out", default="data/synthetic", help="output folder")
    synth.add_argument("--size", default="small", choices=list(SIZES),
                       help=f"images per split {'/'.join(SPLITS)}: {sizes}")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same arguments: byte-identical files)")
    synth.add_argument("--feature-dim", type=int, default=None, metavar="D",
                       help=f"region feature dimension (default: {DEFAULT_FEATURE_DIM}, as the BUTD features)")
    check = add_command(data_commands, "check", "validate a precomp folder, scanning every feature",
                        f"Checks each split's {{split}}_ims.npy, {{split}}_caps.txt and {{split}}_ids.txt and "
                        f"every feature for NaN/inf. By default every split of {', '.join(SPLITS)} present in "
                        "the folder is checked (Flickr30K has no testall) and absent ones are reported.")
    check.add_argument("--data-root", required=True, help="precomp folder, or a folder holding precomp/")
    check.add_argument("--splits", nargs="+", metavar="SPLIT",
                       help="check these splits; a missing one is an error "
                            f"(default: every split of {', '.join(SPLITS)} present in the folder)")
    labels = add_command(data_commands, "labels", "write MVSEN's noun labels ({split}_label.txt)",
                         "Tags every split's captions with spaCy's packaged English model (Penn Treebank tags, as "
                         "NLTK's in the official recipe), keeps lower-cased NN* tokens, takes the --top most frequent "
                         "over the train captions and writes one line of 0/1 ints per image (the union over its "
                         "captions) beside the precomp files, with labels_vocab.txt (column order) and "
                         "labels_stamp.json. A second call with the same captions and --top reuses the files.")
    labels.add_argument("--data-root", required=True, help="precomp folder, or a folder holding precomp/")
    labels.add_argument("--top", type=int, default=1000, metavar="N", help="nouns kept (official: 1000)")
    labels.add_argument("--caps-per-image", type=int, default=5, metavar="N", help="consecutive captions per image")
    labels.add_argument("--force", action="store_true",
                        help="replace label files that this command did not write, e.g. the embedded dataset's "
                             "(default: such files are kept and the command stops with an error)")
    _add_no_progress(labels)
    clip = add_command(data_commands, "clip-features", "write one CLIP image embedding per image ({split}_clip.npy)",
                       "Embeds each image of a precomp {split}_ids.txt (one id per image, or one per caption: then "
                       "every --caps-per-image-th line) with CLIPModel.get_image_features: the CLS token after the "
                       "post-layernorm and the visual projection (512-d for ViT-B/32), not L2-normalised "
                       "(normalising is the consumer's choice). Writes a float32 (N, d) .npy in the order of the "
                       "ids; the standard name is {split}_clip.npy beside the precomp files.\n\n"
                       "An id matches <id>.jpg/.jpeg/.png or an image whose file stem ends with the zero-padded id "
                       "(COCO_val2014_000000391895.jpg, Flickr30K 1000092795.jpg) in the image folder or its "
                       "subfolders. Nothing is downloaded: fetch the weights once on a machine with internet "
                       "access, e.g. huggingface-cli download openai/clip-vit-base-patch32 --local-dir "
                       "/models/clip-vit-base-patch32, then pass --model /models/clip-vit-base-patch32.")
    clip.add_argument("--images", required=True, metavar="DIR",
                      help="folder of the images (searched with its subfolders)")
    clip.add_argument("--ids", required=True, metavar="FILE", help="the precomp {split}_ids.txt")
    clip.add_argument("--model", required=True, metavar="PATH",
                      help="local CLIP model folder (config.json, weights, preprocessor_config.json)")
    clip.add_argument("--out", metavar="FILE",
                      help="output .npy (default: {split}_clip.npy beside the ids file, which must then be "
                           "named {split}_ids.txt)")
    clip.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass")
    clip.add_argument("--caps-per-image", type=int, default=5, metavar="N",
                      help="captions per image when the ids file holds one id per caption")
    _add_device(clip)
    _add_no_progress(clip)

    add_command(commands, "presets", "list the packaged config presets (names for --config)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check_device(args)
        return _dispatch(args)
    except ItrlibError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def _check_device(args: argparse.Namespace) -> None:
    """A command's --device (auto, cpu, cuda, cuda:N) is checked before anything is loaded or written."""
    if getattr(args, "device", None) is not None:
        from itrlib.devices import resolve_device

        resolve_device(args.device, "--device")


def one_line(exc: Exception) -> str:
    """The message of ``exc`` on one line (the name of its type when it has none)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from itrlib.config import load_config
        from itrlib.engine.trainer import CONFIG_FILE, train  # registers every model: configs name them
        from itrlib.io import check_writable

        config = load_config(args.config, args.overrides)  # a bad config fails before anything is written
        check_writable(config.run_dir / CONFIG_FILE, "the run's config")  # a read-only output_dir, at once

        summary = train(config, progress=not args.no_progress)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone prints
            print(json.dumps(summary, indent=2))
    elif args.command == "eval-official":
        from itrlib.runs.official import evaluate_official_checkpoint

        results = evaluate_official_checkpoint(args.checkpoint, args.arch, args.protocol, data_root=args.data_root,
                                               bert_path=args.bert_path, split=args.split, device=args.device,
                                               ties=args.ties, max_pairs_per_block=args.max_pairs_per_block,
                                               out=args.out, progress=not args.no_progress)
        _print_metrics(results)
    elif args.command == "eval":
        from itrlib.errors import ConfigError
        from itrlib.runs.any_run import evaluate_run_protocols, evaluate_two_stage, run_eccv_metrics

        args.metrics = args.metrics or ["recall"]
        if ("recall" in args.metrics) != bool(args.protocol):
            raise ConfigError("eval: --protocol names the protocols of --metrics recall (the default); with "
                              "--metrics eccv alone, give no --protocol")
        if (args.rerank_with is None) != (args.shortlist is None):
            raise ConfigError("eval: --rerank-with and --shortlist go together (two-stage retrieval)")
        if args.rerank_with is not None:
            other = [f"--{name.replace('_', '-')}" for name in ("split", "checkpoint", "save_scores",
                                                                 "max_pairs_per_block") if getattr(args, name)]
            if other or args.metrics != ["recall"]:
                raise ConfigError(f"eval: two-stage retrieval (--rerank-with) ranks --protocol with best.pt; "
                                  f"{', '.join(other) or '--metrics eccv'} cannot be used with it")
            results = evaluate_two_stage(args.run, args.protocol, rerank_with=args.rerank_with,
                                         shortlist=args.shortlist, data_root=args.data_root, device=args.device,
                                         ties=args.ties, progress=not args.no_progress)
            _print_metrics(results)
            return 0
        results = {}
        if "recall" in args.metrics:
            results = evaluate_run_protocols(args.run, args.protocol, data_root=args.data_root, split=args.split,
                                             checkpoint=args.checkpoint, device=args.device, ties=args.ties,
                                             save_scores=args.save_scores,
                                             max_pairs_per_block=args.max_pairs_per_block,
                                             progress=not args.no_progress)
        eccv = (run_eccv_metrics(args.run, data_root=args.data_root, device=args.device,
                                 progress=not args.no_progress) if "eccv" in args.metrics else None)
        _print_metrics(results, eccv)
    elif args.command == "eval-scores":
        from itrlib.evaluation.ranking import evaluate_scores
        from itrlib.io import atomic_write_json, check_writable
        from itrlib.runs.scores import read_score_file

        if args.out:
            check_writable(args.out, "evaluation results")
        sims = read_score_file(args.scores)
        results = {p: evaluate_scores(sims, p, caps_per_image=args.caps_per_image, ties=args.ties)
                   for p in args.protocol}
        if args.out:
            atomic_write_json(args.out, results, "evaluation results")
        _print_metrics(results)
    elif args.command == "compare":
        from itrlib.evaluation.significance import paired_bootstrap
        from itrlib.runs.trained import read_eval

        intervals = {p: paired_bootstrap(read_eval(args.run[0], p), read_eval(args.run[1], p), samples=args.samples,
                                         level=args.level, seed=args.seed) for p in args.protocol}
        print(json.dumps({p: {"rsum_difference": i.difference, "low": i.low, "high": i.high, "level": i.level,
                              "significant": i.significant} for p, i in intervals.items()}, indent=2))
    elif args.command == "composite":
        from itrlib.runs.composite import create_composite

        results = create_composite(args.run, args.members, weights=args.weights, alpha=args.alpha, tune=args.tune,
                                   alpha_step=args.alpha_step, protocols=args.protocol, data_root=args.data_root,
                                   device=args.device, ties=args.ties, progress=not args.no_progress)
        _print_metrics(results)
    elif args.command == "data" and args.data_command == "synth":
        from itrlib.data.synth import write_synthetic

        path = write_synthetic(args.out, size=args.size, seed=args.seed, feature_dim=args.feature_dim)
        print(f"wrote {path}")
    elif args.command == "data" and args.data_command == "check":
        _check_data(args.data_root, args.splits)
    elif args.command == "data" and args.data_command == "labels":
        from itrlib.data.noun_labels import write_noun_labels

        folder = write_noun_labels(args.data_root, args.top, caps_per_image=args.caps_per_image, force=args.force,
                                   progress=not args.no_progress)
        print(f"wrote the noun labels in {folder}")
    elif args.command == "data" and args.data_command == "clip-features":
        from itrlib.data.clip_features import write_clip_features

        path = write_clip_features(args.images, args.ids, args.model, args.out, batch_size=args.batch_size,
                                   device=args.device, caps_per_image=args.caps_per_image,
                                   progress=not args.no_progress)
        print(f"wrote {path}")
    elif args.command == "presets":
        from itrlib.config import list_presets

        print("\n".join(list_presets()))
    return 0


def _print_metrics(results: dict[str, dict], eccv: dict | None = None) -> None:
    """One JSON object: per protocol its metrics and how many queries had a tied ground truth, and the ECCV
    Caption / CxC metrics under ``eccv (testall)`` when computed."""
    shown = {name: {**r["metrics"], "tied_queries": r["tied_queries"]} for name, r in results.items()}
    if eccv is not None:
        shown["eccv (testall)"] = eccv
    print(json.dumps(shown, indent=2))


def _check_data(root: str, splits: list[str] | None) -> None:
    """``data check``: validate the named splits, or every default split present (absent ones reported)."""
    from itrlib.data.precomp import find_precomp_dir, open_split

    if splits is not None:
        order = present = splits
    else:
        folder = find_precomp_dir(root)
        order = list(SPLITS)
        present = [s for s in SPLITS if any((folder / f"{s}_{kind}").exists()
                                            for kind in ("ims.npy", "caps.txt", "ids.txt"))]
        if not present:
            raise DataError(f"no split to check in {folder}: none of {', '.join(SPLITS)} has a "
                            "{split}_ims.npy, {split}_caps.txt or {split}_ids.txt file (name others with --splits)")
    for split in order:
        if split not in present:
            print(f"{split}: not present{_absent_note(split)}")
            continue
        data = open_split(root, split, check_features="full")
        print(f"{split}: {data.n_images} images x {data.n_regions} regions x {data.feature_dim}, "
              f"{data.n_captions} captions: OK")


def _absent_note(split: str) -> str:
    """Why an absent default split may be fine, e.g. " (COCO only; read by coco1k, coco5k)"."""
    readers = [name for name, protocol in PROTOCOLS.items() if protocol.split == split]
    parts = (["COCO only"] if split == "testall" else []) + ([f"read by {', '.join(readers)}"] if readers else [])
    return f" ({'; '.join(parts)})" if parts else ""
