"""Ingest: typed tables from a hand-made minimal PhysioNet-layout directory, and a clear error for each bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from instructx2x.core.config import REPO_ROOT, load_config
from instructx2x.ingest import TABLES, ingest
from instructx2x.core.ledger import read_ledger
from instructx2x.core.tableschema import TableError, arrow_schema, load_schema

LABELS = [
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
]  # fmt: skip
META_HEADER = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
    "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning"
)
D = [f"{i:08x}-0000000{i}-aaaaaaaa-bbbbbbbb-cccccccc" for i in range(1, 7)]
# subject 11111111: studies 51111111 (PA + LATERAL) and 52222222 (AP); subject 12222222: 53333333 (PA, no view), 54444444 (PA)
META_ROWS = [
    f"{D[0]},11111111,51111111,CHEST (PA AND LAT),PA,3056,2544,21800506,213014.531,CHEST (PA AND LAT),postero-anterior,Erect",
    f"{D[1]},11111111,51111111,CHEST (PA AND LAT),LATERAL,3056,2544,21800506,213014.531,CHEST (PA AND LAT),lateral,Erect",
    f"{D[2]},11111111,52222222,CHEST (PORTABLE AP),AP,2705,2539,21800723,80556.875,CHEST (PORTABLE AP),antero-posterior,",
    f"{D[3]},12222222,53333333,CHEST (PA AND LAT),,2544,3056,21321015,84047.984,CHEST (PA AND LAT),,Erect",
    f"{D[4]},12222222,54444444,CHEST (PA AND LAT),PA,2544,3056,21321101,,CHEST (PA AND LAT),postero-anterior,Erect",
]
SPLIT_ROWS = [
    f"{D[0]},51111111,11111111,train",
    f"{D[1]},51111111,11111111,train",
    f"{D[2]},52222222,11111111,train",
    f"{D[3]},53333333,12222222,test",
    f"{D[4]},54444444,12222222,test",
]
DIFF_ANSWER = (
    "the main image has additional findings of consolidation, and pneumonia than the reference image. "
    "the main image is missing the finding of pleural effusion than the reference image. "
)
REPORT = (
    "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ year old"
    " woman with cough\n \n FINDINGS: \n \n Small left pleural effusion.\n \n IMPRESSION: \n \n Small left pleural"
    " effusion.\n"
)


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(text.encode())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_raw(raw: Path) -> Path:
    """A minimal dataset in the layout of `wget -r` from PhysioNet; returns the `physionet.org/files` folder."""
    files = raw / "physionet.org" / "files"
    jpg = files / "mimic-cxr-jpg" / "2.1.0"
    _gz(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", "\n".join([META_HEADER, *META_ROWS]) + "\n")
    _gz(jpg / "mimic-cxr-2.0.0-split.csv.gz", "\n".join(["dicom_id,study_id,subject_id,split", *SPLIT_ROWS]) + "\n")
    chex = ["subject_id,study_id," + ",".join(LABELS)]
    chex.append("11111111,51111111," + ",".join(["1.0" if lab == "Pleural Effusion" else "" for lab in LABELS]))
    chex.append("11111111,52222222," + ",".join(["-1.0" if lab == "Edema" else "" for lab in LABELS]))
    chex.append("12222222,53333333," + ",".join(["1.0" if lab == "No Finding" else "0.0" for lab in LABELS]))
    _gz(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", "\n".join(chex) + "\n")
    _gz(jpg / "mimic-cxr-2.0.0-negbio.csv.gz", "\n".join(chex) + "\n")
    _write(jpg / "index.html", "<html></html>")
    # two of the five images are on disk (empty files are enough: ingest does not decode images)
    for row in META_ROWS[:2]:
        dicom, subject, study = row.split(",")[:3]
        _write(jpg / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", "")
    _write(jpg / "files" / "p11" / "index.html", "<html></html>")

    rep = files / "mimic-cxr" / "2.1.0"
    _write(rep / "files" / "p11" / "p11111111" / "s51111111.txt", REPORT)
    _write(rep / "files" / "p11" / "p11111111" / "s52222222.txt", REPORT.replace("Small", "Moderate"))
    _write(rep / "files" / "p12" / "p12222222" / "s53333333.txt", " FINDINGS: \n \n No acute process.\n")
    _write(rep / "files" / "p12" / "p12222222" / "index.html", "<html></html>")
    _write(rep / "files" / "p12" / "p12222222" / "sXYZ.txt", "not a report id")  # set aside, run goes on

    iv = files / "mimiciv" / "3.1" / "hosp"
    _gz(
        iv / "patients.csv.gz",
        "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n"
        "11111111,F,52,2180,2014 - 2016,2180-09-09\n12222222,M,91,2132,2008 - 2010,\n"
        "13333333,M,40,2150,2011 - 2013,\n",
    )
    _gz(
        iv / "admissions.csv.gz",
        "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,admission_location,"
        "discharge_location,insurance,language,marital_status,race,edregtime,edouttime,hospital_expire_flag\n"
        "11111111,22595853,2180-05-06 22:23:00,2180-05-07 17:15:00,,URGENT,P874LG,TRANSFER FROM HOSPITAL,HOME,"
        "Other,ENGLISH,WIDOWED,WHITE,2180-05-06 19:17:00,2180-05-06 23:30:00,0\n"
        "12222222,21111111,2132-10-15 08:00:00,2132-10-16 10:00:00,,EW EMER.,P1,EMERGENCY ROOM,HOME,Medicare,"
        "ENGLISH,MARRIED,BLACK/AFRICAN AMERICAN,,,0\n",
    )

    vqa = files / "medical-diff-vqa" / "1.0.1"
    _write(
        vqa / "mimic_pair_questions.csv",
        "study_id,subject_id,ref_id,question_type,question,answer,split\n"
        "52222222,11111111,51111111,abnormality,what abnormalities are seen in this image?,"
        '"pleural effusion, edema",train\n'
        "52222222,11111111,51111111,view,which view is this image taken?,AP view,train\n"
        f'52222222,11111111,51111111,difference,what has changed compared to the reference image?,"{DIFF_ANSWER}",train\n'
        "54444444,12222222,53333333,difference,what has changed compared to the reference image?,nothing has changed.,test\n",
    )
    mall = ["subject_id,study_id," + ",".join(LABELS) + ",dicom_id,view,split,study_date,study_order"]
    mall.append("11111111,51111111," + "," * 13 + f",{D[0]},postero-anterior,train,21800506,1.0")
    mall.append("11111111,52222222," + "1.0" + "," * 13 + f",{D[2]},antero-posterior,train,21800723,2.0")
    mall.append("12222222,53333333," + "," * 13 + f",{D[3]},,test,21321015,1.0")
    _write(vqa / "mimic_all.csv", "\n".join(mall) + "\n")
    ent = {
        "entity_name": "pleural effusion", "location": ["left"], "type": None, "level": ["small"],
        "post_location": None, "location2": None, "type2": None, "level2": None, "post_location2": None,
    }  # fmt: skip
    diseases = [
        {"study_id": "51111111", "subject_id": "11111111", "entity": {"pleural effusion": ent}, "no_entity": ["edema"]},
        {"study_id": "52222222", "subject_id": "11111111", "entity": {}, "no_entity": []},
    ]
    _write(vqa / "all_diseases.json", json.dumps(diseases, indent=4))

    ms = files / "ms-cxr" / "1.1.0"
    _write(
        ms / "MS_CXR_Local_Alignment_v1.1.0.csv",
        "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split\n"
        f"{D[0]},Pleural Effusion,Small left pleural effusion,files/p11/p11111111/s51111111/{D[0]}.jpg,"
        "1500,2000,600,500,2544,3056,train\n",
    )
    # the demo's ground truth sits beside physionet.org/: ingest must never touch it
    _write(raw / "ground_truth" / "views.parquet", "secret")
    return files


def make_config(tmp_path: Path, raw: Path) -> dict:
    """The repository's config.yaml with `source: local` pointing at ``raw``."""
    overrides = {"source": "local", "results_dir": str(tmp_path / "results"), "local": {"raw_dir": str(raw)}}
    return load_config(REPO_ROOT / "config.yaml", overrides)


def run_ingest(config: dict) -> dict:
    res = Path(config["results_dir"])
    return ingest(config, res / "tables", res / "ledger" / "ingest.tsv", res / "ledger" / "ingest.counts.tsv")


@pytest.fixture()
def raw(tmp_path) -> Path:
    path = tmp_path / "raw"
    make_raw(path)
    return path


def test_minimal_local_directory_gives_typed_tables(tmp_path, raw):
    config = make_config(tmp_path, raw)
    counts = run_ingest(config)
    tables = Path(config["results_dir"]) / "tables"
    assert sorted(p.stem for p in tables.glob("*.parquet")) == sorted(TABLES)
    assert counts["images"] == 5 and counts["studies"] == 4 and counts["reports"] == 3

    images = pd.read_parquet(tables / "images.parquet")
    assert images["subject_id"].dtype == "int64" and images["StudyTime"].dtype == "float64"
    assert images["path"].iloc[0] == f"files/p11/p11111111/s51111111/{D[0]}.jpg"
    assert Path(images["image_path"].iloc[0]).is_absolute()
    assert images["image_path"].iloc[0].endswith("mimic-cxr-jpg/2.1.0/" + images["path"].iloc[0])
    assert images["ViewPosition"].isna().tolist() == [False, False, False, True, False]
    assert list(images["split"]) == ["train", "train", "train", "test", "test"]
    # StudyTime 80556.875 is 08:05:56.875; a missing StudyTime leaves the date at midnight
    assert images["study_datetime"].iloc[2] == pd.Timestamp("2180-07-23 08:05:56.875")
    assert images["study_datetime"].iloc[4] == pd.Timestamp("2132-11-01")

    studies = pd.read_parquet(tables / "studies.parquet")
    assert list(studies["study_id"]) == [51111111, 52222222, 53333333, 54444444]
    assert studies["report_path"].notna().tolist() == [True, True, True, False]
    assert studies.loc[0, "Pleural Effusion"] == 1.0 and pd.isna(studies.loc[0, "Edema"])
    assert studies.loc[1, "Edema"] == -1.0
    assert studies[LABELS].iloc[3].isna().all()  # no CheXpert row for 54444444

    reports = pd.read_parquet(tables / "reports.parquet")
    assert reports.loc[0, "text"] == REPORT  # verbatim, leading spaces kept

    vqa = pd.read_parquet(tables / "vqa.parquet")
    assert list(vqa["row"]) == [0, 1, 2, 3]
    assert vqa.loc[2, "answer"] == DIFF_ANSWER and vqa.loc[2, "answer"].endswith(". ")
    assert vqa.loc[0, "answer"] == "pleural effusion, edema"
    assert vqa.loc[3, "answer"] == "nothing has changed."

    patients = pd.read_parquet(tables / "patients.parquet")
    assert list(patients["subject_id"]) == [11111111, 12222222]  # 13333333 has no CXR
    assert patients["dod"].isna().tolist() == [False, True]
    admissions = pd.read_parquet(tables / "admissions.parquet")
    assert list(admissions.columns) == ["subject_id", "hadm_id", "admittime", "race"]
    assert list(admissions["race"]) == ["WHITE", "BLACK/AFRICAN AMERICAN"]

    diseases = pd.read_parquet(tables / "diseases.parquet")
    assert diseases.loc[0, "entity"] == "pleural effusion"
    assert list(diseases.loc[0, "location"]) == ["left"] and diseases.loc[0, "type"] is None
    dstudies = pd.read_parquet(tables / "disease_studies.parquet")
    assert [list(x) for x in dstudies["no_entity"]] == [["edema"], []]
    mall = pd.read_parquet(tables / "mimic_all.parquet")
    assert mall.shape == (3, 21) and mall["study_order"].dtype == "float64"
    boxes = pd.read_parquet(tables / "mscxr_boxes.parquet")
    assert boxes.shape == (1, 11) and boxes["x"].dtype == "int64"

    # every table has exactly its schema's parquet types, also where a column is all null here
    for name in TABLES:
        written = pq.read_schema(tables / f"{name}.parquet")
        expected = arrow_schema(load_schema(name))
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in expected], name
    assert pq.read_schema(tables / "diseases.parquet").field("type2").type == pa.list_(pa.string())

    res = Path(config["results_dir"])
    ledger = read_ledger(res / "ledger" / "ingest.tsv")
    assert [(r["item_type"], r["reason"]) for r in ledger] == [("report", "bad_report_name")]
    counts_rows = {r["step"]: r for r in read_ledger(res / "ledger" / "ingest.counts.tsv")}
    assert counts_rows["image_files_on_disk"]["rows_out"] == "2"
    assert counts_rows["image_files_on_disk"]["dropped"] == "3"


def _digests(config) -> dict[str, str]:
    tables = Path(config["results_dir"]) / "tables"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tables.glob("*.parquet"))}


def test_same_input_gives_byte_identical_tables(tmp_path, raw):
    first = make_config(tmp_path / "a", raw)
    second = make_config(tmp_path / "b", raw)
    run_ingest(first)
    run_ingest(second)
    assert len(_digests(first)) == len(TABLES)
    assert _digests(first) == _digests(second)


def test_count_missing_images_can_be_switched_off(tmp_path, raw):
    config = make_config(tmp_path, raw)
    config["ingest"]["count_missing_images"] = False
    run_ingest(config)
    steps = [r["step"] for r in read_ledger(Path(config["results_dir"]) / "ledger" / "ingest.counts.tsv")]
    assert "image_files_on_disk" not in steps and "vqa_rows" in steps


def test_each_dataset_root_can_be_overridden(tmp_path, raw):
    moved = tmp_path / "elsewhere" / "vqa"
    shutil.move(str(raw / "physionet.org/files/medical-diff-vqa/1.0.1"), moved)
    config = make_config(tmp_path, raw)
    with pytest.raises(FileNotFoundError, match="medical_diff_vqa"):
        run_ingest(config)
    config["datasets"]["medical_diff_vqa"]["root"] = str(moved)
    assert run_ingest(config)["vqa"] == 4


def test_never_opens_ground_truth(tmp_path, raw):
    gt = raw / "ground_truth"
    seen: list[tuple[str, Path]] = []
    watching = [True]

    def hook(event, args):
        if watching[0] and event in ("open", "os.listdir", "os.scandir", "os.walk") and args:
            target = args[0]
            if isinstance(target, (str, bytes, os.PathLike)):
                seen.append((event, Path(os.path.abspath(os.fsdecode(target)))))

    sys.addaudithook(hook)  # audit hooks cannot be removed: switch it off after the run
    try:
        run_ingest(make_config(tmp_path, raw))
    finally:
        watching[0] = False
    # the hook did watch the run: it saw the raw tables being opened
    assert ("open", _meta(raw)) in seen
    assert [(e, p) for e, p in seen if p == gt or gt in p.parents] == []


# ----------------------------------------------------------------------------------------------
# Each bad input fails at once, naming the file, the line and the column


def _rewrite_gz(path: Path, edit) -> None:
    text = gzip.decompress(path.read_bytes()).decode()
    _gz(path, edit(text))


def _meta(raw: Path) -> Path:
    return raw / "physionet.org/files/mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-metadata.csv.gz"


def test_missing_column_fails_naming_file_and_column(tmp_path, raw):
    _rewrite_gz(_meta(raw), lambda t: "\n".join(",".join(line.split(",")[:-1]) for line in t.splitlines()) + "\n")
    with pytest.raises(TableError, match=r"metadata\.csv\.gz: line 1 \(header\): missing column\(s\) \['PatientOrientation"):
        run_ingest(make_config(tmp_path, raw))


def test_extra_column_fails(tmp_path, raw):
    _rewrite_gz(_meta(raw), lambda t: "\n".join(line + ",x" for line in t.splitlines()) + "\n")
    with pytest.raises(TableError, match=r"unexpected column\(s\) \['x'\]"):
        run_ingest(make_config(tmp_path, raw))


def test_truncated_gzip_fails_naming_file(tmp_path, raw):
    path = _meta(raw)
    big = META_HEADER + "\n" + "\n".join(META_ROWS * 2000) + "\n"
    _gz(path, big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TableError, match=r"metadata\.csv\.gz: truncated or corrupt gzip.*ends after line \d+"):
        run_ingest(make_config(tmp_path, raw))


def test_unknown_view_position_fails_naming_line_and_column(tmp_path, raw):
    _rewrite_gz(_meta(raw), lambda t: t.replace(",LATERAL,", ",SIDEWAYS,"))
    with pytest.raises(TableError, match=r"metadata\.csv\.gz: line 3 \(data row 1\), column 'ViewPosition': .*'SIDEWAYS'"):
        run_ingest(make_config(tmp_path, raw))


@pytest.mark.parametrize(
    "bad_id, what",
    [
        (f"../{D[2][3:]}", "path separator"),
        (f"{D[2][:8]}/{D[2][9:]}", "path separator"),
        (D[2].upper(), "five groups of 8 lowercase hex"),
    ],
)
def test_bad_dicom_id_fails(tmp_path, raw, bad_id, what):
    _rewrite_gz(_meta(raw), lambda t: t.replace(D[2], bad_id))
    with pytest.raises(TableError, match=rf"line 4 \(data row 2\), column 'dicom_id': expected .*{what}"):
        run_ingest(make_config(tmp_path, raw))


def test_out_of_range_subject_id_fails(tmp_path, raw):
    _rewrite_gz(_meta(raw), lambda t: t.replace(",12222222,53333333,", ",22222222,53333333,"))
    with pytest.raises(TableError, match=r"line 5 \(data row 3\), column 'subject_id': expected an 8-digit subject_id"):
        run_ingest(make_config(tmp_path, raw))


def test_bad_ids_in_vqa_and_json_fail(tmp_path, raw):
    vqa = raw / "physionet.org/files/medical-diff-vqa/1.0.1"
    q = vqa / "mimic_pair_questions.csv"
    good_q = q.read_text()
    q.write_text(good_q.replace("54444444,12222222,53333333", "54444444,12222222,5333333x"))
    with pytest.raises(TableError, match=r"mimic_pair_questions\.csv: line 5 \(data row 3\), column 'ref_id': expected an integer"):
        run_ingest(make_config(tmp_path / "1", raw))
    q.write_text(good_q)
    j = vqa / "all_diseases.json"
    j.write_text(j.read_text().replace('"52222222"', '"../52222222"'))
    with pytest.raises(TableError, match=r"all_diseases\.json: record 1, key 'study_id': .*path separator"):
        run_ingest(make_config(tmp_path / "2", raw))


def test_bad_label_value_fails(tmp_path, raw):
    chex = raw / "physionet.org/files/mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-chexpert.csv.gz"
    _rewrite_gz(chex, lambda t: t.replace("-1.0", "2.0"))
    with pytest.raises(TableError, match=r"chexpert\.csv\.gz: line 3 \(data row 1\), column 'Edema': expected one of"):
        run_ingest(make_config(tmp_path, raw))


def test_cli_subcommand_writes_tables(tmp_path, raw):
    import argparse

    from instructx2x.ingest import cli as ingest_module

    parser = argparse.ArgumentParser()
    ingest_module.add_parser(parser.add_subparsers(dest="command"))
    config_path = tmp_path / "config.yaml"
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "res")
    config_path.write_text(yaml.safe_dump(config))
    args = parser.parse_args(["ingest", "--config", str(config_path), "--raw-dir", str(raw)])
    assert args.func(args) == 0
    assert (tmp_path / "res" / "tables" / "vqa.parquet").is_file()
    assert (tmp_path / "res" / "ledger" / "ingest.counts.tsv").is_file()


def test_snakemake_local_source_manifest_then_ingest(tmp_path, raw):
    """`source: local` through the workflow: the acquisition's local manifest, then the `ingest` rule."""
    import subprocess

    res = tmp_path / "res"
    cmd = [
        str(REPO_ROOT / ".venv" / "bin" / "snakemake"), "-s", str(REPO_ROOT / "Snakefile"),
        "--directory", str(tmp_path), "--cores", "1", "--configfile", str(REPO_ROOT / "config.yaml"),
        "--config", "source=local", f"results_dir={res}", f"local={{raw_dir: {raw}}}",
        "--", str(res / "tables" / "images.parquet"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (res / "raw" / "local_manifest.parquet").is_file()
    assert sorted(p.stem for p in (res / "tables").glob("*.parquet")) == sorted(TABLES)
    assert "rows:" in (res / "logs" / "ingest.log").read_text()


def test_ragged_row_fails_naming_line(tmp_path, raw):
    q = raw / "physionet.org/files/medical-diff-vqa/1.0.1/mimic_pair_questions.csv"
    lines = q.read_text().splitlines()
    lines[2] += ",extra"
    q.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match=r"mimic_pair_questions\.csv: malformed CSV: .*line 3"):
        run_ingest(make_config(tmp_path, raw))


def test_mimiciv_v1_layout_core_folder_and_ethnicity(tmp_path, raw):
    """MIMIC-IV 1.0 keeps the tables in core/ and calls the column `ethnicity` (no admit_provider_id)."""
    v3 = raw / "physionet.org/files/mimiciv/3.1"
    v1 = raw / "physionet.org/files/mimiciv/1.0/core"
    v1.mkdir(parents=True)
    shutil.copy(v3 / "hosp/patients.csv.gz", v1 / "patients.csv.gz")

    def to_v1(text: str) -> str:
        rows = [line.split(",") for line in text.splitlines()]
        rows = [r[:6] + r[7:] for r in rows]  # drop admit_provider_id
        rows[0][11] = "ethnicity"
        return "\n".join(",".join(r) for r in rows) + "\n"

    _gz(v1 / "admissions.csv.gz", to_v1(gzip.decompress((v3 / "hosp/admissions.csv.gz").read_bytes()).decode()))
    config = make_config(tmp_path, raw)
    config["datasets"]["mimiciv"]["version"] = "1.0"
    run_ingest(config)
    adm = pd.read_parquet(Path(config["results_dir"]) / "tables" / "admissions.parquet")
    assert list(adm["race"]) == ["WHITE", "BLACK/AFRICAN AMERICAN"]


# ----------------------------------------------------------------------------------------------
# The synthetic demo dataset (session fixture `demo_dataset` of tests/conftest.py)


def test_ingests_the_demo_dataset_without_touching_ground_truth(tmp_path, demo_dataset):
    gt = demo_dataset / "ground_truth"
    assert gt.is_dir()
    seen: list[tuple[str, Path]] = []
    watching = [True]

    def hook(event, args):
        if watching[0] and event in ("open", "os.listdir", "os.scandir", "os.walk") and args:
            if isinstance(args[0], (str, bytes, os.PathLike)):
                seen.append((event, Path(os.path.abspath(os.fsdecode(args[0])))))

    sys.addaudithook(hook)
    try:
        config = make_config(tmp_path, demo_dataset)
        counts = run_ingest(config)
    finally:
        watching[0] = False
    assert [(e, p) for e, p in seen if p == gt or gt in p.parents] == []
    assert any(e == "open" and p.name == "mimic_pair_questions.csv" for e, p in seen)

    files = demo_dataset / "physionet.org" / "files"
    tables = Path(config["results_dir"]) / "tables"
    meta = pd.read_csv(files / "mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-metadata.csv.gz")
    raw_vqa = pd.read_csv(files / "medical-diff-vqa/1.0.1/mimic_pair_questions.csv", dtype=str, keep_default_na=False)
    assert counts["images"] == len(meta) and counts["vqa"] == len(raw_vqa)
    assert counts["studies"] == meta["study_id"].nunique() == counts["reports"]

    images = pd.read_parquet(tables / "images.parquet")
    assert images["image_path"].map(os.path.isfile).all()
    assert images["ViewPosition"].isna().sum() == meta["ViewPosition"].isna().sum()
    vqa = pd.read_parquet(tables / "vqa.parquet")
    assert vqa["answer"].tolist() == raw_vqa["answer"].tolist()  # verbatim
    diff = vqa[vqa["question_type"] == "difference"]["answer"]
    assert diff.str.endswith(". ").any() and (diff == "nothing has changed.").any()
    studies = pd.read_parquet(tables / "studies.parquet")
    assert studies["report_path"].map(os.path.isfile).all()
    patients = pd.read_parquet(tables / "patients.parquet")
    assert set(patients["subject_id"]) == set(meta["subject_id"])
    boxes = pd.read_parquet(tables / "mscxr_boxes.parquet")
    assert boxes["dicom_id"].isin(images["dicom_id"]).all()
    # the ingested tables agree with the generator's truth (read here by the test, never by ingest)
    truth_images = pd.read_parquet(gt / "images.parquet")
    assert set(truth_images["dicom_id"]) == set(images["dicom_id"])
