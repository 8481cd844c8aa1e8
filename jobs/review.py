"""`clover review export|import`: human review of judged candidates, and the pairs dataset for prep-pairs."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.common import add_config_arguments, exit_on_config_error
from jobs.flags import Command, Option, add_options
from training.preference.review import ReviewConfig

COMMAND = Command(
    description="export: write the candidate pairs a person should decide (judge disagreement, close scores, random "
                "audit) as CSV or JSONL. import: merge the decisions (A, B, tie) over the judge and write the "
                "preference pairs (OUT/pairs/, what `clover prep-pairs` takes), validated.",
    config=ReviewConfig,
)
INPUTS = (Option("--judgments", help="a `clover judge` output", kwargs={"required": True}),
          Option("--candidates", help="the `clover sample-candidates` output it judged", kwargs={"required": True}))
SUBCOMMANDS = {
    "export": (*INPUTS, Option("--out", help="the sheet: .csv or .jsonl", kwargs={"required": True})),
    "import": (*INPUTS, Option("sheet", help="the filled sheet (omit: judge verdicts only)", kwargs={"nargs": "?"}),
               Option("--out", help="output directory (pairs/, report.json)", kwargs={"required": True}),
               Option("--no-validate", help="skip validating the pairs", kwargs={"action": "store_true"})),
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=COMMAND.description)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, options in SUBCOMMANDS.items():
        sub = commands.add_parser(name)
        add_config_arguments(sub)
        add_options(sub, COMMAND.config, options + COMMAND.options)
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover review") -> int:
    from training.preference.review import export_sheet, import_decisions

    args = build_parser(prog).parse_args(argv)
    cfg = COMMAND.configure(args)
    if args.command == "export":
        counts = export_sheet(args.judgments, args.candidates, args.out, cfg)
        print(f"review export: {sum(counts.values())} pairs to decide {counts} -> {args.out}")
        return 0
    report = import_decisions(args.judgments, args.candidates, args.sheet, args.out, cfg)
    print(f"review import: {report.input} prompts, {report.output} pairs, removed {report.removed}, "
          f"{report.extra['human_decisions']} human decisions, {len(report.extra['conflicts'])} conflicts with the judge"
          + (f", {len(report.extra['invalid_decisions'])} invalid decisions" if report.extra["invalid_decisions"] else ""))
    for conflict in report.extra["conflicts"]:
        print(f"  conflict {conflict['item']}: judge {conflict['judge']}, human {conflict['human']}")
    if args.no_validate:
        return 0
    from dataprep.spark import SparkConfig, spark_session
    from dataprep.validate import validate_dataset

    result = validate_dataset(spark_session(SparkConfig(), "clover-review"), args.out)
    print(result.table())
    print(json.dumps({"pairs": f"{args.out}/pairs", "next": f"clover prep-pairs {args.out}/pairs --tokenizer DIR --out OUT"}))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
