"""The instructions stage on small hand-made tables: operations for every difference row, attributes
with their sources, join with accepted pairs, patient-wise splits, Table 1, byte-identical reruns."""

import json  # noqa: F401

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructx2x.instructions.operation import load_operation_dicts as op_dicts
from instructx2x.instructions.build import build_instructions, build_operations, export_authors_layout
from instructx2x.core.paths import read_parquet
from instructx2x.instructions.splits import assign_splits, split_of
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
    ops = op_dicts(df.loc[0, "operations"])
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
    cons = op_dicts(df.loc[3, "operations"])[0]
    assert (cons["location"], cons["severity"]) == ("right lower lung", "moderate")
    assert cons["sources"] == {"location": "report", "severity": "report", "study": "current",
                               "location_span": "49:65", "severity_span": "40:48"}
    text = " FINDINGS: No pneumothorax.  There is a moderate right lower lobe consolidation."
    assert (text[49:65], text[40:48]) == ("right lower lobe", "moderate")  # spans in the report text
    assert df.loc[0, "instruction"].startswith("Change the level of right pleural effusion from small to moderate; ")
    ledger = {r["item_id"]: r for r in read_ledger(tmp_path / "l_a.tsv")}
    assert "unicorn" in ledger["50000005_50000004"]["reason"]
    assert "unicorn" in ledger["50000005_50000004"]["detail"]
    assert ledger["50000003_50000002"]["reason"].startswith("no operation")
    # byte-identical on a second run
    _, out2 = _run_ops(tmp_path, paths, "b")
    assert out.read_bytes() == out2.read_bytes()


def _png(path, value):
    from PIL import Image

    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path, format="PNG")


D_CUR, D_PAST = "0a1b2c3d-4e5f6071-8293a4b5-c6d7e8f9-0a1b2c3d", "1a1b2c3d-4e5f6071-8293a4b5-c6d7e8f9-0a1b2c3d"
D_CUR2, D_PAST2 = "2a1b2c3d-4e5f6071-8293a4b5-c6d7e8f9-0a1b2c3d", "3a1b2c3d-4e5f6071-8293a4b5-c6d7e8f9-0a1b2c3d"


def test_join_splits_table1_and_export(tmp_path):
    paths = _tables(tmp_path)
    _, ops_path = _run_ops(tmp_path, paths)
    res = tmp_path / "results"
    img = res / "registration" / "images"
    img.mkdir(parents=True)
    for i, name in enumerate(("p1", "c1", "p2", "c2")):
        _png(img / f"{name}.png", 40 * i)
    acc = pd.DataFrame({"pair_id": ["50000002_50000001", "50000007_50000006", "50000003_50000002"],
                        "aligned_current_path": [str(img / "c1.png"), str(img / "c2.png"), "x"],
                        "past_path": [str(img / "p1.png"), str(img / "p2.png"), "y"],
                        "mi": [-0.95, -0.9, -0.99]})
    acc.to_parquet(tmp_path / "acc.parquet", index=False)
    pd.DataFrame({"pair_id": ["50000002_50000001", "50000007_50000006"], "current_dicom_id": [D_CUR, D_CUR2],
                  "past_dicom_id": [D_PAST, None], "chronological": [True, True]}).to_parquet(
        tmp_path / "pairs.parquet", index=False)
    kw = dict(split_settings={"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}, "holdout_folder": "p19"}, seed=3,
              pairs_path=tmp_path / "pairs.parquet", results_dir=res)
    outs = []
    for tag in "ab":
        out = res / "instructions" / f"instr_{tag}.parquet"
        df = build_instructions(ops_path, tmp_path / "acc.parquet", paths["studies"], out, tmp_path / f"t1_{tag}.csv",
                                tmp_path / f"t1_{tag}.md", tmp_path / f"lj_{tag}.tsv", tmp_path / f"cj_{tag}.tsv", **kw)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert list(df["pair_id"]) == ["50000002_50000001", "50000007_50000006"]
    assert list(df["split"]) == [split_of(11000001, kw["split_settings"]["fractions"], 3), "holdout"]
    assert df["chronological"].all() and df["mi"].tolist() == [-0.95, -0.9]
    assert df["current_dicom_id"].tolist()[0] == D_CUR and df["past_dicom_id"].isna().tolist() == [False, True]
    # on disk: image paths relative to the results directory, operations a typed list of structs
    raw = pd.read_parquet(res / "instructions" / "instr_a.parquet")
    assert raw["past_image"].tolist() == ["registration/images/p1.png", "registration/images/p2.png"]
    assert read_parquet(res / "instructions" / "instr_a.parquet")["past_image"].tolist()[0] == str(img / "p1.png")
    field = pq.read_schema(res / "instructions" / "instr_a.parquet").field("operations")
    assert pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type)
    assert [o["op"] for o in raw.loc[0, "operations"]] == ["change", "add", "add", "remove"]
    t1 = pd.read_csv(tmp_path / "t1_a.csv").set_index("split")
    assert t1.loc["all", "samples"] == 2 and t1.loc["all", "operations"] == 5
    assert t1.loc["all", "Add"] == 3 and t1.loc["all", "Add %"] == 60.0 and t1.loc["all", "ops per sample"] == 2.5
    assert "| holdout | 1 |" in (tmp_path / "t1_a.md").read_text()
    ledger = {r["item_id"]: r["reason"] for r in read_ledger(tmp_path / "lj_a.tsv")}
    assert "not among" in ledger["50000009_50000008"] and "no parsed operation" in ledger["50000003_50000002"]


def _authors_rows(path, split):
    """What the authors' loader (x2x_dataset.EditDataset) does with a dataset folder: its rows of
    ``split`` and the two images each row names, opened as it opens them."""
    from PIL import Image

    df = pd.read_csv(path / "instructions.csv")
    data = df[df["split"] == split].reset_index(drop=True)
    return [(r["instruction"], np.asarray(Image.open(path / "current" / r["current_dicom_id"]).convert("L")),
             np.asarray(Image.open(path / "past" / r["past_dicom_id"]).convert("L"))) for _, r in data.iterrows()]


def test_export_authors_layout_ids_splits_and_readme(tmp_path):
    res = tmp_path / "results"
    img = res / "registration" / "images"
    img.mkdir(parents=True)
    for i, name in enumerate(("p1", "c1", "p2", "c2", "p3", "c3")):
        _png(img / f"{name}.png", 30 * i)
    ops = [{"op": "add", "finding": "edema", "location": None, "severity": None, "from_level": None, "to_level": None,
            "direction": None, "sources": {}}]
    rows = [  # (pair, subject, split, current dicom, past dicom, past image, current image)
        ("50000002_50000001", 11000001, "train", D_CUR, D_PAST, "p1", "c1"),
        ("50000004_50000003", 19000001, "holdout", D_CUR2, D_PAST2, "p2", "c2"),
        ("50000005_50000003", 19000001, "holdout", D_CUR2, D_PAST, "p3", "c3"),  # current registered twice
        ("50000007_50000006", 12000001, "test", None, D_PAST, "p1", "c1"),       # no dicom_id
    ]
    df = pd.DataFrame([{"pair_id": p, "subject_id": s, "current_study_id": int(p[:8]), "past_study_id": int(p[9:]),
                        "current_dicom_id": c, "past_dicom_id": d, "split": sp, "chronological": True, "mi": -0.9,
                        "past_image": str(img / f"{pi}.png"), "current_image": str(img / f"{ci}.png"),
                        "instruction": f"Add an edema {i}", "operations": ops, "n_ops": 1}
                       for i, (p, s, sp, c, d, pi, ci) in enumerate(rows)])
    from instructx2x.core.paths import relativise
    from instructx2x.core.tableschema import load_schema, write_table

    table, meta = relativise(df, ["past_image", "current_image"], res, res / "instructions" / "i.parquet")
    write_table(table, load_schema("instructions"), res / "instructions" / "i.parquet", metadata=meta)
    out = res / "instructions" / "authors"
    counts = export_authors_layout(res / "instructions" / "i.parquet", out)
    assert counts == {"train": 1, "holdout/test": 1}
    train = _authors_rows(out, "train")
    assert [t for t, _, _ in train] == ["Add an edema 0"]
    assert (train[0][1] == 30).all() and (train[0][2] == 0).all()  # current c1, past p1
    assert (out / "current" / D_CUR).is_file() and (out / "past" / D_PAST).is_file()
    csv = pd.read_csv(out / "instructions.csv")
    assert list(csv.columns) == ["split", "current_dicom_id", "past_dicom_id", "instruction"]
    assert csv["current_dicom_id"].tolist() == [D_CUR] and "holdout" not in set(csv["split"])
    hold = _authors_rows(out / "holdout", "test")  # the holdout: a dataset of its own, split `test`
    assert [t for t, _, _ in hold] == ["Add an edema 1"]
    excluded = pd.read_csv(out / "excluded.csv").set_index("pair_id")
    assert excluded.loc["50000005_50000003", "kind"] == "dicom_id clash"
    assert excluded.loc["50000007_50000006", "kind"] == "no dicom_id"
    readme = (out / "README.md").read_text()
    assert "| holdout | `holdout/` | `test` | 1 |" in readme and "dicom_id clash: 1" in readme


def test_malformed_table_fails_naming_file_and_column(tmp_path):
    paths = _tables(tmp_path)
    pd.read_parquet(paths["vqa"]).drop(columns=["answer"]).to_parquet(paths["vqa"], index=False)
    with pytest.raises(TableError, match=r"vqa\.parquet.*'answer'"):
        _run_ops(tmp_path, paths)


def test_splits_patient_wise_holdout_and_fractions():
    subjects = [11000000 + i for i in range(4000)] + [19000000 + i for i in range(30)]
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    m = assign_splits(subjects, fr, seed=1)
    assert all(m[s] == "holdout" for s in subjects if str(s).startswith("19"))
    counts = pd.Series([m[s] for s in subjects[:4000]]).value_counts().to_dict()
    # binomial: within 4 standard deviations of the fractions
    for name, f in fr.items():
        assert abs(counts[name] - 4000 * f) < 4 * (4000 * f * (1 - f)) ** 0.5, counts
    assert m == assign_splits(list(reversed(subjects)), fr, seed=1)
    assert m != assign_splits(subjects, fr, seed=2)
    assert all(m[s] == split_of(s, fr, 1) for s in subjects)
    # tiny cohorts still get a patient in every split asked for (the one documented exception)
    small = assign_splits([11000001, 11000002, 11000003, 11000004], {"train": 0.97, "val": 0.01, "test": 0.02}, 0)
    assert sorted(small.values()) == ["test", "train", "train", "val"]
    assert all(small[s] == split_of(s, {"train": 0.97, "val": 0.01, "test": 0.02}, 0) for s in small if s not in
               {b[0] for b in small.borrowed})


def test_removing_patients_moves_no_remaining_patient():
    rng = np.random.default_rng(0)
    subjects = [int(s) for s in rng.choice(np.arange(10_000_000, 19_999_999), 3000, replace=False)]
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    full = assign_splits(subjects, fr, seed=7)
    for keep in (0.99, 0.7, 0.3):
        sub = [s for s in subjects if rng.random() < keep] + [int(s) for s in rng.choice(np.arange(10_000_000, 18_999_999), 50)]
        part = assign_splits(sub, fr, seed=7)
        assert not part.borrowed
        assert all(part[s] == full[s] for s in sub if s in full)


def test_mi_threshold_change_moves_no_patient_between_splits(tmp_path):
    """The issue's case: a stricter registration gate drops pairs (and whole patients); every patient
    still present keeps its split, so no test patient leaks into training."""
    from instructx2x.core.tableschema import load_schema, write_table

    rng = np.random.default_rng(3)
    n = 600
    subjects = rng.choice(np.arange(10_000_000, 19_999_999), n // 3, replace=False)
    ops = [{"op": "add", "finding": "edema", "location": None, "severity": None, "from_level": None, "to_level": None,
            "direction": None, "sources": {}}]
    rows = []
    for i in range(n):
        cur, past = 50_000_000 + 2 * i + 1, 50_000_000 + 2 * i
        rows.append({"pair_id": f"{cur}_{past}", "subject_id": int(subjects[i % len(subjects)]), "current_study_id": cur,
                     "past_study_id": past, "vqa_split": "train", "answer": "a", "status": "ok", "reason": "",
                     "operations": ops, "n_ops": 1, "instruction": "Add an edema"})
    write_table(pd.DataFrame(rows), load_schema("instruction_operations"), tmp_path / "ops.parquet")
    mi = -0.8 - 0.2 * rng.random(n)
    studies = pd.DataFrame({"study_id": [50_000_000 + i for i in range(2 * n)], "StudyDate": 21800101})
    studies.to_parquet(tmp_path / "studies.parquet", index=False)
    splits = {}
    for thr in (-0.85, -0.93):  # registration.mi_threshold: keep pairs with mi <= thr
        keep = mi <= thr
        pd.DataFrame({"pair_id": [r["pair_id"] for r, k in zip(rows, keep) if k], "aligned_current_path": "c.png",
                      "past_path": "p.png", "mi": mi[keep]}).to_parquet(tmp_path / f"acc{thr}.parquet", index=False)
        out = build_instructions(tmp_path / "ops.parquet", tmp_path / f"acc{thr}.parquet", tmp_path / "studies.parquet",
                                 tmp_path / f"i{thr}.parquet", tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "l.tsv",
                                 tmp_path / "c.tsv", split_settings={"fractions": {"train": 0.8, "val": 0.1, "test": 0.1}},
                                 seed=11)
        splits[thr] = dict(zip(out["subject_id"], out["split"]))
    loose, strict = splits[-0.85], splits[-0.93]
    assert len(strict) < len(loose)  # the gate change dropped patients
    assert set(strict) < set(loose)
    assert {s: loose[s] for s in strict} == strict
    assert {"train", "val", "test", "holdout"} <= set(loose.values())
