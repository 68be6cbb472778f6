"""CLI: ``instructx2x parse-instruction "TEXT"`` and ``instructx2x parse-difference "ANSWER"`` print the
operations as a JSON list of {"op","finding","location","severity","from","to"}; exit status 2 and the
reason on stderr when the text does not fit the grammar."""

from __future__ import annotations

import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("parse-instruction", help="instruction text -> operations (JSON)")
    p.add_argument("text", help='e.g. "Add a moderate left pleural effusion"')
    p.add_argument("--render", action="store_true", help="also print the canonical instruction text on stderr")
    p.set_defaults(func=_parse_instruction)
    d = subparsers.add_parser("parse-difference", help="Medical-Diff-VQA difference answer -> operations (JSON)")
    d.add_argument("text", help='e.g. "the main image has an additional finding of edema than the reference image. "')
    d.set_defaults(func=_parse_difference)


def _print(ops) -> None:
    print(json.dumps([o.to_cli_dict() for o in ops]))


def _parse_instruction(args) -> int:
    from .grammar import UnparseableInstruction, parse_instruction, render_instruction

    try:
        ops = parse_instruction(args.text)
    except UnparseableInstruction as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print(ops)
    if args.render:
        print(render_instruction(ops), file=sys.stderr)
    return 0


def _parse_difference(args) -> int:
    from .difference_parser import UnparseableAnswer, parse_difference

    try:
        ops = parse_difference(args.text)
    except UnparseableAnswer as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 2
    _print(ops)
    return 0
