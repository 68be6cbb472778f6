"""Paths in tables are relative to the results directory (core/paths.py): a finished results tree,
copied elsewhere, audits clean and edits from its own files, never from the original's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from instructx2x.core.paths import path_columns, read_parquet, relativise, resolve, table_results_dir, to_table_path
from instructx2x.core.io import write_parquet

TABLES_WITH_PATHS = ("registration/registration.parquet", "registration/accepted_pairs.parquet",
                     "instructions/instructions.parquet", "inference/records.parquet")


def _vals(series):
    return [None if pd.isna(v) else v for v in series]


def test_relativise_round_trip_and_paths_outside_stay_absolute(tmp_path):
    res = tmp_path / "res"
    df = pd.DataFrame({"p": [str(res / "a" / "x.png"), "/data/raw/y.jpg", None, ""], "n": [1, 2, 3, 4]})
    table, meta = relativise(df, ["p"], res, res / "t" / "deep" / "t.parquet")
    assert _vals(table["p"]) == ["a/x.png", "/data/raw/y.jpg", None, ""]
    write_parquet(table, res / "t" / "deep" / "t.parquet", metadata=meta)
    assert table_results_dir(res / "t" / "deep" / "t.parquet") == str(res)
    assert path_columns(res / "t" / "deep" / "t.parquet") == ["p"]
    moved = tmp_path / "elsewhere"
    shutil.move(res, moved)
    back = read_parquet(moved / "t" / "deep" / "t.parquet")
    assert _vals(back["p"]) == [str(moved / "a" / "x.png"), "/data/raw/y.jpg", None, ""]
    assert to_table_path(moved / "a" / "x.png", moved) == "a/x.png" and resolve("a/x.png", moved) == str(moved / "a/x.png")
    # a table without the metadata (written before, or outside a results dir) reads unchanged
    df.to_parquet(tmp_path / "plain.parquet", index=False)
    assert _vals(read_parquet(tmp_path / "plain.parquet")["p"]) == _vals(df["p"])


def _cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return subprocess.run([sys.executable, "-m", "instructx2x.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_copied_results_tree_audits_and_edits_from_the_copy(small_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_run.pristine, copy, symlinks=True)
    away = small_run.pristine.with_name("pristine.away")
    os.rename(small_run.pristine, away)  # nothing may read the original while the copy is used
    try:
        res = copy / "results"
        original = str(small_run.pristine)
        for rel in TABLES_WITH_PATHS:
            path = res / rel
            assert table_results_dir(path) == str(res), rel
            raw = pd.read_parquet(path)
            for col in path_columns(path):
                vals = [v for v in raw[col].dropna() if v]
                assert vals and not any(str(v).startswith("/") for v in vals), (rel, col, vals[:2])
            resolved = read_parquet(path)
            for col in path_columns(path):
                vals = [v for v in resolved[col].dropna() if v]
                assert all(v.startswith(str(res) + "/") and Path(v).is_file() for v in vals), (rel, col)
                assert not any(v.startswith(original) for v in vals)
        audit = _cli("audit", "results", cwd=copy)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        ins = read_parquet(res / "instructions/instructions.parquet")
        row = ins[ins["split"].isin(["test", "holdout"])].iloc[0]
        edit = _cli("edit", "--model", "results/model/pipeline", "--image", row["past_image"], "--instruction",
                    row["instruction"], "--masks", "results/masks/pseudo_masks.npz", "--out", str(tmp_path / "edit"),
                    "--steps", "2", cwd=copy)
        assert edit.returncode == 0, edit.stderr[-3000:]
        record = json.loads(edit.stdout)
        assert Path(record["paths"]["edited"]).is_file() and str(tmp_path) in record["paths"]["edited"]
    finally:
        os.rename(away, small_run.pristine)
