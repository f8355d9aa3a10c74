"""Command line of the suite: ``python -m itrlib.suite notebooks`` runs the notebooks of one profile headlessly
(what ``make notebooks`` and ``make reproduce-tables`` call), ``python -m itrlib.suite report`` assembles the
profile's REPORT.md (``make report``). The library's own commands are ``python -m itrlib``."""

from __future__ import annotations

import argparse
import sys

from itrlib.cli import HelpFormatter, add_command, one_line
from itrlib.errors import ItrlibError
from itrlib.suite.profiles import PROFILES

PROG = "python -m itrlib.suite"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="itrlib's suite: the notebooks of the three papers, "
                                     "run headlessly per profile.", formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    nbs = add_command(commands, "notebooks", "run the notebooks headlessly (papermill) for one profile",
                      "Executed copies, runs, tables and figures go to outputs/PROFILE/ (one folder per profile); "
                      "wall times per notebook go to outputs/PROFILE/notebooks/timings.json.")
    nbs.add_argument("--profile", default="embedded", choices=list(PROFILES),
                     help="smoke (tests), embedded (synthetic data), f30k or coco (real precomp features)")
    nbs.add_argument("--data-root", metavar="DIR",
                     help="precomp folder passed to every notebook as data_root (default: the presets' data.root)")
    nbs.add_argument("--bert-path", metavar="DIR",
                     help="text-encoder weights passed as bert_path, e.g. /models/bert-base-uncased "
                          "(default: the presets' text.bert_path)")
    nbs.add_argument("--only", action="extend", type=_comma_list, default=[], metavar="TEXT[,TEXT...]",
                     help="run only the notebooks whose path contains TEXT, e.g. afa/02; several: repeat the option "
                          "or separate with commas, e.g. afa/02,user/03 (default: every notebook under notebooks/)")
    nbs.add_argument("overrides", nargs="*", metavar="section.key=value",
                     help="config overrides passed to every notebook (default: none)")
    report = add_command(commands, "report", "assemble outputs/PROFILE/REPORT.md from what the notebooks wrote",
                         "Reads the profile's tables, figures and notebook wall times; trains and evaluates nothing.")
    report.add_argument("--profile", default="embedded", choices=list(PROFILES),
                        help="the profile whose outputs/PROFILE/ folder is assembled")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        from itrlib.suite.report.report_md import write_report

        print(f"report written: {write_report(args.profile)}")
        return 0
    from papermill.exceptions import PapermillExecutionError

    from itrlib.suite.notebook_runner import run_notebooks

    try:
        run_notebooks(args.profile, data_root=args.data_root, bert_path=args.bert_path, overrides=args.overrides,
                      only=args.only)
    except ItrlibError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except PapermillExecutionError as exc:
        print(f"error: a notebook failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 2 if exc.ename in _error_names(ItrlibError) else 1
    return 0


def _comma_list(text: str) -> list[str]:
    """``--only``: one value per option, commas separating several (no nargs: it would swallow the overrides that
    follow)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected a notebook path fragment such as afa/02, got {text!r}")
    return parts


def _error_names(error: type[BaseException]) -> set[str]:
    """Names of ``error`` and its subclasses: a notebook's failure reports only the exception's name."""
    return {error.__name__}.union(*(_error_names(sub) for sub in error.__subclasses__()))


if __name__ == "__main__":
    sys.exit(main())
