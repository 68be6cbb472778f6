"""The paper's Table 1: samples per split, operations per type with percentages, average operations per sample."""

from __future__ import annotations

import json

import pandas as pd

from .splits import SPLITS

OP_LABELS = (("add", "Add"), ("remove", "Remove"), ("change", "Change the level"))


def table1(instructions: pd.DataFrame) -> pd.DataFrame:
    """One row per split (+ ``all``): samples, ops per type (count and %), total ops, ops per sample."""
    rows = []
    for split in list(SPLITS) + ["all"]:
        df = instructions if split == "all" else instructions[instructions["split"] == split]
        counts = {k: 0 for k, _ in OP_LABELS}
        for cell in df["operations"]:
            for o in (json.loads(cell) if isinstance(cell, str) else cell):
                counts[o["op"]] += 1
        total = sum(counts.values())
        row = {"split": split, "samples": int(len(df))}
        for k, label in OP_LABELS:
            row[f"{label}"] = counts[k]
            row[f"{label} %"] = round(100.0 * counts[k] / total, 2) if total else 0.0
        row["operations"] = total
        row["ops per sample"] = round(total / len(df), 3) if len(df) else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(t: pd.DataFrame) -> str:
    cols = list(t.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in t.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in r) + " |")
    return "Table 1. MIMIC-EDIT-INSTRUCTION: samples per split and operations per type.\n\n" + "\n".join(lines) + "\n"
