"""The instructions stage on small hand-made tables: operations for every difference row, attributes
with their sources, join with accepted pairs, patient-wise splits, Table 1, byte-identical reruns."""

import json

import pandas as pd
import pytest

from instructx2x.instructions.build import build_instructions, build_operations, export_authors_layout
from instructx2x.instructions.splits import assign_splits
from instructx2x.core.ledger import read_ledger
from instructx2x.core.tableschema import TableError

DIFF_Q = "what has changed compared to the reference image?"


def _tables(tmp_path):
    vqa = pd.DataFrame([
        # pair 1: subject 11000001 (p11), level change + add + remove
        (50000002, 11000001, 50000001, "location", "where is the pneumothorax?", "left apical area", "train"),
        (50000002, 11000001, 50000001, "level", "what level is the pneumothorax?", "small", "train"),
        (50000002, 11000001, 50000001, "difference", DIFF_Q,
         "the level of pleural effusion has changed from small to moderate. the main image has additional findings "
         "of pneumothorax, and atelectasis than the reference image. the main image is missing the finding of edema "
         "than the reference image. ", "train"),
        # pair 2: nothing changed
        (50000003, 11000001, 50000002, "difference", DIFF_Q, "nothing has changed.", "train"),
        # pair 3: unparseable
        (50000005, 12000001, 50000004, "difference", DIFF_Q, "the main image has an additional finding of "
         "unicorn than the reference image. ", "val"),
        # pair 4: holdout patient (p19), attribute from the report only
        (50000007, 19000001, 50000006, "difference", DIFF_Q,
         "the main image has an additional finding of consolidation than the reference image. ", "test"),
        # pair 5: another patient
        (50000009, 13000001, 50000008, "difference", DIFF_Q,
         "the main image has an additional finding of cardiomegaly than the reference image. ", "train"),
    ], columns=["study_id", "subject_id", "ref_id", "question_type", "question", "answer", "split"])
    vqa["row"] = range(len(vqa))
    diseases = pd.DataFrame([
        (11000001, 50000001, "pleural effusion", ["right"], None, ["small"], None),
        (11000001, 50000002, "pleural effusion", ["right"], None, ["moderate"], None),
        (11000001, 50000001, "edema", ["bilateral"], None, ["mild"], None),
        (11000001, 50000002, "pneumothorax", None, None, None, None),
        (11000001, 50000002, "atelectasis", ["left"], None, None, "the left lung base"),
        (13000001, 50000009, "cardiomegaly", None, None, ["mild"], None),
    ], columns=["subject_id", "study_id", "entity", "location", "type", "level", "post_location"])
    reports = pd.DataFrame([
        (19000001, 50000007, "x", " FINDINGS: No pneumothorax.  There is a moderate right lower lobe consolidation."),
        (11000001, 50000002, "x", " FINDINGS: Pneumothorax. Atelectasis."),
    ], columns=["subject_id", "study_id", "report_path", "text"])
    studies = pd.DataFrame({"study_id": [50000001 + i for i in range(9)], "StudyDate": [21800101 + i for i in range(9)]})
    paths = {}
    for name, df in (("vqa", vqa), ("diseases", diseases), ("reports", reports), ("studies", studies)):
        paths[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(paths[name], index=False)
    return paths


def _run_ops(tmp_path, paths, tag="a"):
    out = tmp_path / f"ops_{tag}.parquet"
    df = build_operations(paths["vqa"], paths["diseases"], paths["reports"], out, tmp_path / f"l_{tag}.tsv",
                          tmp_path / f"c_{tag}.tsv")
    return df, out


def test_operations_attributes_sources_and_ledger(tmp_path):
    paths = _tables(tmp_path)
    df, out = _run_ops(tmp_path, paths)
    assert list(df["pair_id"]) == ["50000002_50000001", "50000003_50000002", "50000005_50000004",
                                   "50000007_50000006", "50000009_50000008"]
    assert list(df["status"]) == ["ok", "no_operation", "unparseable", "ok", "ok"]
    ops = json.loads(df.loc[0, "operations"])
    assert [(o["op"], o["finding"]) for o in ops] == [("change", "pleural effusion"), ("add", "pneumothorax"),
                                                      ("add", "atelectasis"), ("remove", "edema")]
    change, ptx, atel, edema = ops
    assert (change["from_level"], change["to_level"], change["location"]) == ("small", "moderate", "right")
    assert change["sources"]["location"] == "keyinfo"
    # keyinfo has no location/level for the pneumothorax: the study's own questions give them
    assert (ptx["location"], ptx["severity"]) == ("left apical", "small")
    assert ptx["sources"]["location"] == ptx["sources"]["severity"] == "question"
    # post_location when the location words are only a side? location words win
    assert atel["location"] == "left" and atel["sources"]["location"] == "keyinfo"
    # remove: from the past study
    assert (edema["location"], edema["severity"], edema["sources"]["study"]) == ("bilateral", "mild", "past")
    # report text (negated sentence skipped)
    cons = json.loads(df.loc[3, "operations"])[0]
    assert (cons["location"], cons["severity"]) == ("right lower lung", "moderate")
    assert cons["sources"] == {"location": "report", "severity": "report", "study": "current"}
    assert df.loc[0, "instruction"].startswith("Change the level of right pleural effusion from small to moderate; ")
    ledger = {r["item_id"]: r for r in read_ledger(tmp_path / "l_a.tsv")}
    assert "unicorn" in ledger["50000005_50000004"]["reason"]
    assert "unicorn" in ledger["50000005_50000004"]["detail"]
    assert ledger["50000003_50000002"]["reason"].startswith("no operation")
    # byte-identical on a second run
    _, out2 = _run_ops(tmp_path, paths, "b")
    assert out.read_bytes() == out2.read_bytes()


def test_join_splits_table1_and_export(tmp_path):
    paths = _tables(tmp_path)
    _, ops_path = _run_ops(tmp_path, paths)
    for name in ("p1", "c1", "p2", "c2"):
        (tmp_path / f"{name}.png").write_bytes(b"png")
    acc = pd.DataFrame({"pair_id": ["50000002_50000001", "50000007_50000006", "50000003_50000002"],
                        "aligned_current_path": [str(tmp_path / "c1.png"), str(tmp_path / "c2.png"), "x"],
                        "past_path": [str(tmp_path / "p1.png"), str(tmp_path / "p2.png"), "y"],
                        "mi": [-0.95, -0.9, -0.99]})
    acc.to_parquet(tmp_path / "acc.parquet", index=False)
    pd.DataFrame({"pair_id": ["50000002_50000001"], "current_dicom_id": ["d-cur"], "past_dicom_id": ["d-past"],
                  "chronological": [True]}).to_parquet(tmp_path / "pairs.parquet", index=False)
    kw = dict(split_settings={"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "holdout_folder": "p19"}, seed=3,
              pairs_path=tmp_path / "pairs.parquet")
    outs = []
    for tag in "ab":
        out = tmp_path / f"instr_{tag}.parquet"
        df = build_instructions(ops_path, tmp_path / "acc.parquet", paths["studies"], out, tmp_path / f"t1_{tag}.csv",
                                tmp_path / f"t1_{tag}.md", tmp_path / f"lj_{tag}.tsv", tmp_path / f"cj_{tag}.tsv", **kw)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert list(df["pair_id"]) == ["50000002_50000001", "50000007_50000006"]
    assert list(df["split"]) == ["train", "holdout"]
    assert df["chronological"].all() and df["mi"].tolist() == [-0.95, -0.9]
    assert df["current_dicom_id"].tolist()[0] == "d-cur" and df["past_dicom_id"].isna().tolist() == [False, True]
    t1 = pd.read_csv(tmp_path / "t1_a.csv").set_index("split")
    assert t1.loc["all", "samples"] == 2 and t1.loc["all", "operations"] == 5
    assert t1.loc["all", "Add"] == 3 and t1.loc["all", "Add %"] == 60.0 and t1.loc["all", "ops per sample"] == 2.5
    assert "| holdout | 1 |" in (tmp_path / "t1_a.md").read_text()
    ledger = {r["item_id"]: r["reason"] for r in read_ledger(tmp_path / "lj_a.tsv")}
    assert "not among" in ledger["50000009_50000008"] and "no parsed operation" in ledger["50000003_50000002"]
    n = export_authors_layout(tmp_path / "instr_a.parquet", tmp_path / "export")
    csv = pd.read_csv(tmp_path / "export" / "instructions.csv")
    assert n == 2 and list(csv.columns) == ["split", "current_dicom_id", "past_dicom_id", "instruction"]
    assert (tmp_path / "export" / "current" / csv.loc[0, "current_dicom_id"]).read_bytes() == b"png"


def test_malformed_table_fails_naming_file_and_column(tmp_path):
    paths = _tables(tmp_path)
    pd.read_parquet(paths["vqa"]).drop(columns=["answer"]).to_parquet(paths["vqa"], index=False)
    with pytest.raises(TableError, match=r"vqa\.parquet.*'answer'"):
        _run_ops(tmp_path, paths)


def test_splits_patient_wise_holdout_and_fractions():
    subjects = [11000000 + i for i in range(200)] + [19000000 + i for i in range(30)]
    m = assign_splits(subjects, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert all(m[s] == "holdout" for s in subjects if str(s).startswith("19"))
    counts = pd.Series([m[s] for s in subjects[:200]]).value_counts().to_dict()
    assert counts == {"train": 160, "val": 20, "test": 20}
    assert m == assign_splits(list(reversed(subjects)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert m != assign_splits(subjects, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2)
    small = assign_splits([11000001, 11000002, 11000003, 11000004], {"train": 0.97, "val": 0.01, "test": 0.02}, 0)
    assert sorted(small.values()) == ["test", "train", "train", "val"]
