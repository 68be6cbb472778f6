"""``instructx2x ingest``: validate the raw tables and write the typed tables (outside Snakemake)."""

from __future__ import annotations

import logging
from pathlib import Path

from instructx2x.ingest.tables import ingest


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ingest", help="validate the raw tables and write typed parquet tables")
    p.add_argument("--config", default="config.yaml", help="config file (default: config.yaml)")
    p.add_argument("--source", choices=["demo", "local", "physionet"], help="override `source`")
    p.add_argument("--raw-dir", help="override `local.raw_dir` (implies --source local)")
    p.add_argument("--out", help="output folder (default: <results_dir>/tables)")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    from instructx2x.core.config import load_config

    overrides: dict = {}
    if args.source:
        overrides["source"] = args.source
    if args.raw_dir:
        overrides["source"] = "local"
        overrides["local"] = {"raw_dir": args.raw_dir}
    config = load_config(args.config, overrides)
    results = Path(config["results_dir"])
    out = Path(args.out) if args.out else results / "tables"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    counts = ingest(config, out, results / "ledger" / "ingest.tsv", results / "ledger" / "ingest.counts.tsv")
    for name, n in counts.items():
        print(f"{name}\t{n}")
    return 0
