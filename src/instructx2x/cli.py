"""The ``instructx2x`` command line: one sub-command per capability.

Each entry of ``SUBCOMMANDS`` names a module that defines ``add_parser(subparsers)``; the parser
it adds sets ``func`` (called with the parsed arguments, returning an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from instructx2x.core.errors import InputError, one_line

# Errors of the file system about a path the user gave (a missing file, a folder where a file was
# expected, no permission): expected, printed like an InputError.
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)

SUBCOMMANDS: dict[str, str] = {
    "demo-data": "instructx2x.synthetic.cli",
    "audit": "instructx2x.provenance",
    "ingest": "instructx2x.ingest.cli",
    "register": "instructx2x.registration.cli",
    "download": "instructx2x.acquire.download",
    "edit": "instructx2x.inference.edit",
    "serve": "instructx2x.inference.serve",
    "parse-instruction": "instructx2x.instructions.cli",
    "extract-attributes": "instructx2x.instructions.extract_cli",
    "train": "instructx2x.training.cli",
    "evaluate": "instructx2x.evaluation.evaluate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructx2x",
        description="InstructX2X: interpretable counterfactual chest X-ray editing, end to end.",
        epilog="Expected errors print one line and exit 2; add --debug anywhere for the traceback.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (InputError, *PATH_ERRORS) as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
