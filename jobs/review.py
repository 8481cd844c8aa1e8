"""`clover review export|import`: human review of judged candidates, and the pairs dataset for prep-pairs."""

from __future__ import annotations

import argparse
import json
import sys

from jobs.common import exit_on_config_error, stage_config


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "export: write the candidate pairs a person should decide (judge disagreement, close scores, random audit) "
        "as CSV or JSONL. import: merge the decisions (A, B, tie) over the judge and write the preference pairs "
        "(OUT/pairs/, what `clover prep-pairs` takes), validated."))
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("export", "import"):
        sub = commands.add_parser(name)
        sub.add_argument("--judgments", required=True, help="a `clover judge` output")
        sub.add_argument("--candidates", required=True, help="the `clover sample-candidates` output it judged")
        sub.add_argument("--config", help="YAML with review settings")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    commands.choices["export"].add_argument("--out", required=True, help="the sheet: .csv or .jsonl")
    commands.choices["import"].add_argument("sheet", nargs="?", help="the filled sheet (omit: judge verdicts only)")
    commands.choices["import"].add_argument("--out", required=True, help="output directory (pairs/, report.json)")
    commands.choices["import"].add_argument("--no-validate", action="store_true")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None, prog: str = "clover review") -> int:
    from training.preference.review import ReviewConfig, export_sheet, import_decisions

    args = build_parser(prog).parse_args(argv)
    cfg = stage_config(ReviewConfig, args, {})
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
