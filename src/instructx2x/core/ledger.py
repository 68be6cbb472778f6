"""The ledger: every item set aside by any stage, with its reason, in one table a person can read.

Each stage writes its own ledger file (``results/ledger/<stage>.tsv``) with the columns of
``LEDGER_COLUMNS``; the ``ledger`` rule concatenates them into ``results/ledger/ledger.tsv``.
Counts at every filter (rows in / rows out) go to ``results/ledger/<stage>.counts.tsv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

LEDGER_COLUMNS = ("stage", "item_type", "item_id", "reason", "detail")
COUNT_COLUMNS = ("stage", "step", "rows_in", "rows_out", "dropped", "note")


@dataclass
class Ledger:
    """Collects set-aside items and filter counts for one stage; ``write`` is atomic."""

    stage: str
    entries: list[dict] = field(default_factory=list)
    counts: list[dict] = field(default_factory=list)

    def set_aside(self, item_type: str, item_id, reason: str, detail: str = "") -> None:
        self.entries.append(
            {
                "stage": self.stage,
                "item_type": item_type,
                "item_id": str(item_id),
                "reason": reason,
                "detail": " ".join(str(detail).split()),
            }
        )

    def count(self, step: str, rows_in: int, rows_out: int, note: str = "") -> None:
        self.counts.append(
            {
                "stage": self.stage,
                "step": step,
                "rows_in": int(rows_in),
                "rows_out": int(rows_out),
                "dropped": int(rows_in) - int(rows_out),
                "note": note,
            }
        )

    def write(self, path: str | Path, counts_path: str | Path | None = None) -> None:
        _write_tsv(Path(path), LEDGER_COLUMNS, self.entries)
        if counts_path is not None:
            _write_tsv(Path(counts_path), COUNT_COLUMNS, self.counts)


def _write_tsv(path: Path, columns, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    tmp.replace(path)


def read_ledger(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def merge_ledgers(paths, out_path: str | Path) -> int:
    """Concatenate stage ledgers (sorted by stage, item) into one file; returns the row count."""
    rows: list[dict] = []
    for p in paths:
        rows.extend(read_ledger(p))
    rows.sort(key=lambda r: (r["stage"], r["item_type"], r["item_id"], r["reason"]))
    _write_tsv(Path(out_path), LEDGER_COLUMNS, rows)
    return len(rows)
