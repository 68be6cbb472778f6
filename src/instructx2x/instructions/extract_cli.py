"""CLI: ``instructx2x extract-attributes --finding "pleural effusion" REPORT.txt`` prints, as JSON, the
location and severity the report gives the finding (attachment by scope, ``report_scope.ReportExtractor``),
with the source (``report``), the character span and words each attribute came from, and every mention of
the finding (negated ones marked). A missing or unreadable file, or an unknown finding, is an error
(exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

from instructx2x.core.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("extract-attributes", help="location/severity of a finding in a report text (JSON)",
                              description=__doc__)
    p.add_argument("report", help="report text file (MIMIC-CXR .txt); '-' reads stdin")
    p.add_argument("--finding", required=True, help='finding name or synonym, e.g. "pleural effusion", "effusion"')
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from .report_scope import extract_report_attributes

    if args.report == "-":
        text = sys.stdin.read()
    else:
        path = Path(args.report)
        if not path.is_file():
            raise InputError(f"{path}: no such report file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    try:
        result = extract_report_attributes(text, args.finding)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print(json.dumps(result, indent=2))
    return 0
