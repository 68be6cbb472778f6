"""Contract tests of the synthetic demo dataset (data-contract §1-§6) on the session fixture."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from instructx2x.synthetic import truth as T
from instructx2x.synthetic.generate import generate_dataset

JPG = "physionet.org/files/mimic-cxr-jpg/2.1.0"
CXR = "physionet.org/files/mimic-cxr/2.1.0"
IV = "physionet.org/files/mimiciv/3.1"
DV = "physionet.org/files/medical-diff-vqa/1.0.1"
MS = "physionet.org/files/ms-cxr/1.1.0"
CHEX = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
        "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices")
HEADERS = {
    f"{JPG}/mimic-cxr-2.0.0-metadata.csv.gz": "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,"
    "Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning",
    f"{JPG}/mimic-cxr-2.0.0-split.csv.gz": "dicom_id,study_id,subject_id,split",
    f"{JPG}/mimic-cxr-2.0.0-chexpert.csv.gz": CHEX,
    f"{JPG}/mimic-cxr-2.0.0-negbio.csv.gz": CHEX,
    f"{IV}/hosp/patients.csv.gz": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
    f"{IV}/hosp/admissions.csv.gz": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
    "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,edouttime,hospital_expire_flag",
    f"{DV}/mimic_pair_questions.csv": "study_id,subject_id,ref_id,question_type,question,answer,split",
    f"{DV}/mimic_all.csv": CHEX + ",dicom_id,view,split,study_date,study_order",
    f"{MS}/MS_CXR_Local_Alignment_v1.1.0.csv": "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split",
}
VOCAB = set("""<start> what abnormalities are seen in the soft tissues ? atelectasis is there edema no located on left side or right level
pneumothorax minimal has changed compared to reference image main an additional finding of than . missing findings fracture ,
lung opacity and pleural effusion this apical area where small consolidation pneumonia evidence any thickening yes pa view
bibasilar middle mild type compressive cardiomegaly retrocardiac bilateral multifocal which taken patchy emphysema base vascular
congestion interstitial region upper hernia layering parenchymal rib ap nothing calcification enlargement cardiac silhouette
infection moderate lower heart failure hilar basilar tortuosity thoracic aorta linear descending basal plate-like blunting
costophrenic angle from lungs subtle mid lobe dense thymoma severe air collection bases scoliosis granuloma hematoma calcified focal
pneumomediastinum scattered gastric distention pericardial contusion increasing acute massive moderately hypertensive disease mildly
lobes hemithorax hypoxemia ground-glass large minimally medial probably also obstructive apicolateral decreasing multi-focal""".split())


def tokenize(text: str) -> list[str]:
    """nltk.word_tokenize equivalent for these strings: words (with inner hyphens), '?', ',', '.'."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*|[?,.]", text.lower())


def _header(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return fh.readline().rstrip("\n")


def test_headers(demo_dataset):
    for rel, header in HEADERS.items():
        assert _header(demo_dataset / rel) == header, rel


def test_gzip_has_no_mtime(demo_dataset):
    raw = (demo_dataset / JPG / "mimic-cxr-2.0.0-metadata.csv.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"


def test_ids_paths_and_images(demo_dataset):
    meta = pd.read_csv(demo_dataset / JPG / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert meta["subject_id"].between(10_000_000, 19_999_999).all()
    assert meta["study_id"].between(50_000_000, 59_999_999).all()
    assert meta["dicom_id"].str.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}").all()
    assert meta["StudyTime"].dtype == np.float64 and meta["StudyDate"].dtype == np.int64
    assert set(meta["ViewPosition"].dropna()) <= {"PA", "AP", "LATERAL"} and meta["ViewPosition"].isna().any()
    names = (demo_dataset / JPG / "IMAGE_FILENAMES").read_text().splitlines()
    gt = pd.read_parquet(demo_dataset / "ground_truth/images.parquet").set_index("dicom_id")
    assert len(names) == len(meta) == len(gt)
    for rel in names[:40]:
        path = demo_dataset / JPG / rel
        m = re.fullmatch(r"files/p(1\d)/p(1\d{7})/s(5\d{7})/([0-9a-f-]{44})\.jpg", rel)
        assert m and m.group(2).startswith(m.group(1))
        row = gt.loc[m.group(4)]
        if row["truncated"]:
            continue
        im = Image.open(path)
        assert im.mode == "L" and im.format == "JPEG"
        assert im.size == (row["width"], row["height"]) and im.size[0] != im.size[1]
    truncated = gt[gt["truncated"]]
    assert len(truncated) >= 1
    with pytest.raises(OSError):
        Image.open(demo_dataset / JPG / truncated["path"].iloc[0]).load()


def test_sha256sums_and_manifest(demo_dataset):
    root = demo_dataset / MS
    lines = (root / "SHA256SUMS.txt").read_text().splitlines()
    paths = [ln.split(" ", 1)[1] for ln in lines]
    assert paths == sorted(paths, key=lambda p: p.encode())
    for ln in lines:
        h, rel = ln.split(" ", 1)
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == h
    assert "index.html" not in paths and (root / "index.html").exists()
    assert (demo_dataset / "physionet.org/robots.txt").exists()
    man = pd.read_parquet(demo_dataset / "demo_manifest.parquet")
    assert list(man.columns) == ["dataset", "path", "sha256", "size", "url", "fetched_at"]
    assert set(man["dataset"]) == {"mimic_cxr_jpg", "mimic_cxr", "mimiciv", "medical_diff_vqa", "ms_cxr"}
    assert man["url"].str.startswith("https://physionet.org/files/").all() and man["fetched_at"].isna().all()


def test_vqa_templates_and_vocabulary(demo_dataset):
    q = pd.read_csv(demo_dataset / DV / "mimic_pair_questions.csv", keep_default_na=False)
    assert set(q["question_type"]) == {"abnormality", "presence", "view", "location", "level", "type", "difference"}
    assert set(q["split"]) == {"train", "val", "test"}
    for text in pd.concat([q["question"], q["answer"]]):
        assert set(tokenize(text)) <= VOCAB, text
    diff = q[q["question_type"] == "difference"]["answer"]
    assert (diff == "nothing has changed.").any()
    changed = diff[diff != "nothing has changed."]
    assert changed.str.endswith(". ").all()
    pat = re.compile(r"(the level of [a-z ]+ has changed from [a-z ]+ to [a-z ]+\. )*"
                     r"(the main image has (an additional finding of [a-z ]+|additional findings of ([a-z ]+, )+and [a-z ]+) than the reference image\. )?"
                     r"(the main image is missing (the finding of [a-z ]+|the findings of ([a-z ]+, )+and [a-z ]+) than the reference image\. )?")
    for a in changed:
        assert pat.fullmatch(a), a


def test_ground_truth_consistency(demo_dataset):
    gt = demo_dataset / "ground_truth"
    pats = pd.read_parquet(gt / "patients.parquet")
    assert (pats["folder"] == "p19").sum() == 2  # round(0.125 * 16)
    iv = pd.read_csv(demo_dataset / IV / "hosp/admissions.csv.gz")
    assert set(iv["race"]) <= set(T.RACE_NAMES)
    defects = pd.read_parquet(gt / "defects.parquet")
    assert {"mirrored", "foreign_image", "unalignable", "truncated_jpg", "wrong_view_label", "missing_view_label"} <= set(defects["defect"])
    diseases = json.loads((demo_dataset / DV / "all_diseases.json").read_text())
    findings = pd.read_parquet(gt / "findings.parquet")
    by_study = findings.groupby("study_id")["finding"].apply(set).to_dict()
    for rec in diseases:
        assert set(rec["entity"]) == by_study.get(int(rec["study_id"]), set())
        for e in rec["entity"].values():
            assert len(e) == 9
    chex = pd.read_csv(demo_dataset / JPG / "mimic-cxr-2.0.0-chexpert.csv.gz")
    eff = chex.set_index("study_id")["Pleural Effusion"]
    for sid, names in by_study.items():
        assert (eff[sid] == 1.0) == ("pleural effusion" in names)


def test_transform_convention_maps_reference_to_image():
    M = T.transform_matrix(np.deg2rad(90), 1.0, 0.0, 0.0, (11, 21), (11, 21))
    # the point one pixel right of the reference centre lands one pixel BELOW the image centre
    assert np.allclose(M @ np.array([11.0, 5.0, 1.0]), [10.0, 6.0])


def test_deterministic(tmp_path, demo_dataset):
    generate_dataset(tmp_path, patients=16, seed=7, tables_only=True)
    for rel in HEADERS:
        assert (tmp_path / rel).read_bytes() == (demo_dataset / rel).read_bytes(), rel


def _patient(**kw):
    p = dict(lung_template=0, race_group="white", habitus=1.0, gender="M", age=50)
    p.update(kw)
    return p


def test_left_finding_is_drawn_on_image_right():
    from instructx2x.synthetic import phantom

    base = phantom.render_frontal(_patient(), [], "PA", 1)
    eff = phantom.render_frontal(_patient(), [dict(finding="pleural effusion", side="left", zone=None, level_rank=2)], "PA", 1)
    diff = eff - base
    half = diff.shape[1] // 2
    assert diff[:, half:].sum() > 10 * abs(diff[:, :half].sum())
    # a larger level draws a larger effusion
    small = phantom.render_frontal(_patient(), [dict(finding="pleural effusion", side="left", zone=None, level_rank=0)], "PA", 1)
    assert (small - base).sum() < diff.sum()


def test_identity_traits_change_the_image():
    from instructx2x.synthetic import phantom

    ref = phantom.render_frontal(_patient(), [], "PA", 1)
    for change in (dict(gender="F"), dict(age=85), dict(race_group="black")):
        other = phantom.render_frontal(_patient(**change), [], "PA", 1)
        assert np.abs(other - ref).mean() > 0.002, change


@pytest.mark.slow
def test_full_generation_is_byte_identical(tmp_path, demo_dataset):
    out = tmp_path / "again"
    generate_dataset(out, patients=16, seed=7)
    for name in ("mimic-cxr-jpg", "mimic-cxr", "medical-diff-vqa", "ms-cxr", "mimiciv"):
        version = next((demo_dataset / "physionet.org/files" / name).iterdir()).name
        rel = f"physionet.org/files/{name}/{version}/SHA256SUMS.txt"
        assert (out / rel).read_bytes() == (demo_dataset / rel).read_bytes(), rel


def test_follow_ups_of_a_patient_share_their_exposure():
    """A patient's images differ in gain and gamma by the small follow-up nuisance only (so an
    editor's input and target differ mainly by their findings); patients differ widely."""
    t = T.build_truth(40, 3)
    im = t["images"]
    per = im.groupby("subject_id").agg(e_min=("exposure", "min"), e_max=("exposure", "max"),
                                       g_min=("gamma", "min"), g_max=("gamma", "max"))
    j = T.FOLLOWUP_JITTER
    assert (per["e_max"] / per["e_min"] <= (1 + j) / (1 - j) + 1e-9).all()
    assert (per["g_max"] / per["g_min"] <= (1 + j) / (1 - j) + 1e-9).all()
    assert im["exposure"].max() / im["exposure"].min() > 1.2  # between patients: the full range
