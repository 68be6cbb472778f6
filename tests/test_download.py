"""Acquisition from a PhysioNet-like server on loopback (real HTTP, Basic auth, Range requests).

A tiny hand-made dataset in PhysioNet's layout: three subjects with Diff-VQA difference pairs (one
pair has a study without a PA image), one MS-CXR box on an AP image, and images no one needs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from instructx2x.cli import SUBCOMMANDS
from instructx2x.core.config import REPO_ROOT, validate_config
from instructx2x.acquire.credentials import Credentials, CredentialsError, get_credentials
from instructx2x.acquire.download import download, fetch_images, fetch_tables, needed_files
from instructx2x.acquire.fetcher import AuthError, DownloadError
from instructx2x.core.ledger import Ledger
from instructx2x.acquire.local_manifest import build_local_manifest
from helpers.physionet_mirror import PhysioNetMirror, write_index_pages, write_sha256sums

USER, PASSWORD = "alice", "s3cr3t-Pa55word-zq"

SUBJ = {"A": "10000001", "B": "10000002", "C": "10000003", "D": "10000004"}
# study -> (subject, [(dicom_id, ViewPosition)])
STUDIES = {
    "50000001": ("A", [("PA", 1), ("LATERAL", 2)]),
    "50000002": ("A", [("PA", 3)]),
    "50000003": ("B", [("AP", 4)]),
    "50000004": ("B", [("PA", 5)]),
    "50000005": ("C", [("PA", 6), ("PA", 7)]),
    "50000006": ("C", [("PA", 8)]),
    "50000007": ("D", [("PA", 9)]),
}
# difference pairs (main, ref): A kept, B dropped (50000003 has no PA), C kept
PAIRS = [("50000002", "50000001"), ("50000004", "50000003"), ("50000006", "50000005")]


def dicom(n: int) -> str:
    return f"{n:08x}-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd"


def image_rel(study: str, n: int) -> str:
    s = SUBJ[STUDIES[study][0]]
    return f"files/p{s[:2]}/p{s}/s{study}/{dicom(n)}.jpg"


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(text.encode())


def _w(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def make_tree(root: Path, image_bytes: int = 3000) -> Path:
    """``root/physionet.org/files/<slug>/<version>/...`` with SHA256SUMS.txt and index.html pages."""
    files = root / "physionet.org" / "files"
    jpg, cxr, iv = files / "mimic-cxr-jpg/2.1.0", files / "mimic-cxr/2.1.0", files / "mimiciv/3.1"
    vqa, ms = files / "medical-diff-vqa/1.0.1", files / "ms-cxr/1.1.0"
    meta = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,StudyTime,"
            "ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,PatientOrientationCodeSequence_CodeMeaning"]
    split = ["dicom_id,study_id,subject_id,split"]
    chex = ["subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,Lung Lesion,"
            "Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices"]
    for study, (who, imgs) in STUDIES.items():
        s = SUBJ[who]
        for view, n in imgs:
            meta.append(f"{dicom(n)},{s},{study},CHEST (PA AND LAT),{view},3000,2500,21800506,213014.531,"
                        f"CHEST (PA AND LAT),postero-anterior,Erect")
            split.append(f"{dicom(n)},{study},{s},train")
            rng = hashlib.sha256(str(n).encode()).digest()
            _w(jpg / image_rel(study, n), b"\xff\xd8" + (rng * (image_bytes // 32 + 1))[: image_bytes - 4] + b"\xff\xd9")
        chex.append(f"{s},{study}" + ",1.0" * 14)
        _w(cxr / f"files/p{s[:2]}/p{s}/s{study}.txt", f" FINAL REPORT\n FINDINGS: study {study}.\n")
        _w(cxr / f"files/p{s[:2]}/p{s}/s{study}/{dicom(99)}.dcm", b"DICM" * 500)  # never needed
    _gz(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", "\n".join(meta) + "\n")
    _gz(jpg / "mimic-cxr-2.0.0-split.csv.gz", "\n".join(split) + "\n")
    _gz(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", "\n".join(chex) + "\n")
    _gz(jpg / "mimic-cxr-2.0.0-negbio.csv.gz", "\n".join(chex) + "\n")
    _w(jpg / "IMAGE_FILENAMES", "\n".join(image_rel(st, n) for st, (_, im) in STUDIES.items() for _, n in im) + "\n")
    _gz(iv / "hosp/patients.csv.gz", "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n"
        + "".join(f"{s},F,60,2180,2014 - 2016,\n" for s in SUBJ.values()))
    _gz(iv / "hosp/admissions.csv.gz", "subject_id,hadm_id,admittime,race\n"
        + "".join(f"{s},2{s[1:]},2180-05-06 22:23:00,WHITE\n" for s in SUBJ.values()))
    _gz(iv / "hosp/labevents.csv.gz", "never,needed\n" * 200)
    q = ["study_id,subject_id,ref_id,question_type,question,answer,split"]
    for main, ref in PAIRS:
        s = SUBJ[STUDIES[main][0]]
        q.append(f"{main},{s},{ref},abnormality,what abnormalities are seen in this image?,edema,train")
        q.append(f'{main},{s},{ref},difference,what has changed compared to the reference image?,"nothing has changed. ",train')
    _w(vqa / "mimic_pair_questions.csv", "\n".join(q) + "\n")
    _w(vqa / "mimic_all.csv", "subject_id,study_id\n" + "".join(f"{SUBJ[w]},{st}\n" for st, (w, _) in STUDIES.items()))
    _w(vqa / "all_diseases.json", json.dumps({}))
    _w(ms / "MS_CXR_Local_Alignment_v1.1.0.csv",
       "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split\n"
       f"{dicom(4)},Edema,edema,{image_rel('50000003', 4)},10,10,50,50,2500,3000,train\n")
    _w(ms / "MS_CXR_Local_Alignment_v1.1.0.json", "{}")
    with zipfile.ZipFile(cxr / "mimic-cxr-reports.zip", "w") as zf:
        for p in sorted((cxr / "files").rglob("*.txt")):
            zf.writestr(p.relative_to(cxr).as_posix(), p.read_bytes())
    for version_root in (jpg, cxr, iv, vqa, ms):
        _w(version_root / "LICENSE.txt", "license\n")
        write_sha256sums(version_root)
    write_index_pages(root / "physionet.org")
    return root / "physionet.org"


NEEDED_IMAGES = sorted([image_rel("50000001", 1), image_rel("50000002", 3), image_rel("50000005", 6),
                        image_rel("50000005", 7), image_rel("50000006", 8), image_rel("50000003", 4)])


def make_config(tmp_path: Path, base_url: str, **physionet) -> dict:
    with open(REPO_ROOT / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    config["source"] = "physionet"
    config["results_dir"] = str(tmp_path / "results")
    config["physionet"] = {"base_url": base_url, "workers": 3, "backoff_s": 0.01, "progress": False, **physionet}
    return validate_config(config)


CREDS = Credentials(USER, PASSWORD)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("server"))


@pytest.fixture()
def mirror(served):
    with PhysioNetMirror(served, USER, PASSWORD) as m:
        yield m


def test_full_download_fetches_only_the_needed_files(tmp_path, mirror, served):
    config = make_config(tmp_path, mirror.base_url)
    dest = tmp_path / "raw"
    summary = download(config, dest, credentials=CREDS)
    # only the needed images crossed the wire, each once
    assert sorted(p.split("2.1.0/", 1)[1] for p in mirror.files_served(".jpg")) == NEEDED_IMAGES
    assert mirror.file_requests(".jpg") == len(NEEDED_IMAGES)
    assert mirror.file_requests(".dcm") == 0 and mirror.file_requests("labevents.csv.gz") == 0
    assert summary["images_needed"] == 6 and summary["images_in_dataset"] == 9
    assert summary["difference_pairs"] == 3 and summary["difference_pairs_with_pa"] == 2
    assert summary["reports_needed"] == 4
    got = sorted(p.relative_to(dest / "physionet.org/files/mimic-cxr-jpg/2.1.0").as_posix()
                 for p in (dest / "physionet.org/files/mimic-cxr-jpg/2.1.0/files").rglob("*.jpg"))
    assert got == NEEDED_IMAGES
    # byte-identical to the server, same layout
    for rel in NEEDED_IMAGES:
        assert (dest / "physionet.org/files/mimic-cxr-jpg/2.1.0" / rel).read_bytes() == \
            (served / "files/mimic-cxr-jpg/2.1.0" / rel).read_bytes()
    assert (dest / "physionet.org/files/mimiciv/3.1/hosp/admissions.csv.gz").is_file()
    assert not list(dest.rglob("*.part"))
    manifest = pd.read_parquet(dest / "physionet_manifest.parquet")
    assert list(manifest.columns) == ["dataset", "path", "sha256", "size", "url", "fetched_at"]
    assert len(manifest) == 5 + 10 + 6 + 4  # SHA256SUMS x5, tables, images, reports
    for row in manifest.itertuples():
        root = dest / "physionet.org/files" / "/".join(row.url.split("/files/", 1)[1].split("/")[:2])
        assert hashlib.sha256((root / row.path).read_bytes()).hexdigest() == row.sha256
    ledger = pd.read_csv(dest / "ledger/acquire.tsv", sep="\t")
    assert list(ledger["item_id"]) == ["50000004_50000003"] and list(ledger["reason"]) == ["no_pa_image"]
    # a second run transfers nothing and gives the same manifest
    before = len(mirror.files_served(".jpg"))
    n_requests = sum(mirror.requests.values())
    summary2 = download(config, dest, credentials=CREDS)
    assert summary2["images_transferred"] == 0 and len(mirror.files_served(".jpg")) == before
    assert sum(mirror.requests.values()) == n_requests  # everything present and verified locally
    assert pd.read_parquet(dest / "physionet_manifest.parquet").equals(manifest)


def test_interrupted_transfer_resumes_without_restarting(tmp_path, mirror, served):
    config = make_config(tmp_path, mirror.base_url, chunk_bytes=1024)
    rel = NEEDED_IMAGES[0]
    url_path = f"files/mimic-cxr-jpg/2.1.0/{rel}"
    size = (served / url_path).stat().st_size
    mirror.cut_after[url_path] = 2048
    fetch_tables(config, tmp_path / "raw", tmp_path / "t.parquet", credentials=CREDS)
    fetch_images(config, tmp_path / "raw", tmp_path / "t.parquet", tmp_path / "m.parquet", tmp_path / "s.json",
                 tmp_path / "l.tsv", tmp_path / "c.tsv", credentials=CREDS)
    assert mirror.statuses[url_path] == [200, 206]
    assert mirror.bytes_sent[url_path] == size  # 2048 + the rest: not restarted
    assert (tmp_path / "raw/physionet.org/files/mimic-cxr-jpg/2.1.0" / rel).read_bytes() == (served / url_path).read_bytes()


def test_partial_file_left_by_a_killed_run_is_resumed(tmp_path, mirror, served):
    """A ``.part`` from an earlier (killed) run: the next run asks only for the missing bytes."""
    config = make_config(tmp_path, mirror.base_url)
    raw = tmp_path / "raw"
    fetch_tables(config, raw, tmp_path / "t.parquet", credentials=CREDS)
    rel = NEEDED_IMAGES[3]
    url_path = f"files/mimic-cxr-jpg/2.1.0/{rel}"
    data = (served / url_path).read_bytes()
    part = raw / "physionet.org/files/mimic-cxr-jpg/2.1.0" / (rel + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[:1000])
    fetch_images(config, raw, tmp_path / "t.parquet", tmp_path / "m.parquet", tmp_path / "s.json",
                 tmp_path / "l.tsv", tmp_path / "c.tsv", credentials=CREDS)
    assert mirror.statuses[url_path] == [206]
    assert mirror.bytes_sent[url_path] == len(data) - 1000
    assert (raw / "physionet.org/files/mimic-cxr-jpg/2.1.0" / rel).read_bytes() == data and not part.exists()


def test_transient_503_is_retried(tmp_path, mirror):
    config = make_config(tmp_path, mirror.base_url)
    url_path = "files/mimiciv/3.1/hosp/patients.csv.gz"
    mirror.fail_503[url_path] = 2
    fetch_tables(config, tmp_path / "raw", tmp_path / "t.parquet", credentials=CREDS)
    assert mirror.statuses[url_path] == [503, 503, 200]


def test_corrupted_file_is_retried_then_quarantined(tmp_path, mirror, served):
    config = make_config(tmp_path, mirror.base_url, checksum_retries=1)
    fetch_tables(config, tmp_path / "raw", tmp_path / "t.parquet", credentials=CREDS)
    # corrupted once: the retry heals it
    healed = f"files/mimic-cxr-jpg/2.1.0/{NEEDED_IMAGES[1]}"
    mirror.corrupt[healed] = 1
    # corrupted every time: quarantined and reported
    bad = f"files/mimic-cxr-jpg/2.1.0/{NEEDED_IMAGES[2]}"
    mirror.corrupt[bad] = 99
    with pytest.raises(DownloadError) as err:
        fetch_images(config, tmp_path / "raw", tmp_path / "t.parquet", tmp_path / "m.parquet", tmp_path / "s.json",
                     tmp_path / "l.tsv", tmp_path / "c.tsv", credentials=CREDS)
    assert NEEDED_IMAGES[2] in str(err.value) and "quarantined" in str(err.value)
    assert mirror.statuses[bad] == [200, 200] and mirror.statuses[healed] == [200, 200]
    raw = tmp_path / "raw"
    assert (raw / "physionet.org/files/mimic-cxr-jpg/2.1.0" / NEEDED_IMAGES[1]).is_file()
    assert not (raw / "physionet.org/files/mimic-cxr-jpg/2.1.0" / NEEDED_IMAGES[2]).exists()
    q = raw / "quarantine/mimic_cxr_jpg" / NEEDED_IMAGES[2]
    assert q.is_file() and q.read_bytes() != (served / bad).read_bytes()
    ledger = pd.read_csv(tmp_path / "l.tsv", sep="\t")
    assert "quarantined" in set(ledger["reason"])
    assert not (tmp_path / "m.parquet").exists()


def test_wrong_credentials_stop_at_once_with_a_clear_message(tmp_path, mirror):
    config = make_config(tmp_path, mirror.base_url)
    with pytest.raises(AuthError) as err:
        fetch_tables(config, tmp_path / "raw", tmp_path / "t.parquet", credentials=Credentials(USER, "wrong-password-xy"))
    msg = str(err.value)
    assert "401" in msg and "data use agreement" in msg and "PHYSIONET_USERNAME" in msg
    assert "wrong-password-xy" not in msg
    assert sum(mirror.requests.values()) <= 5  # no retries after a 401


def test_cli_reports_failure_and_reads_env_credentials(tmp_path, mirror):
    cfg = tmp_path / "config.yaml"
    config = make_config(tmp_path, "https://example.invalid/files/")
    cfg.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
    env.update(PHYSIONET_USERNAME=USER, PHYSIONET_PASSWORD="not-the-password", HOME=str(tmp_path))
    # `instructx2x download` (cli.SUBCOMMANDS) runs the same parser; invoked via the module so this test
    # does not depend on every other subcommand importing
    assert SUBCOMMANDS["download"] == "instructx2x.acquire.download"
    cmd = [sys.executable, "-m", "instructx2x.acquire.download", "--dest", str(tmp_path / "d"), "--base-url", mirror.base_url,
           "--config", str(cfg)]
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "data use agreement" in bad.stderr and "not-the-password" not in bad.stderr + bad.stdout
    env["PHYSIONET_PASSWORD"] = PASSWORD
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["images_fetched_or_present"] == 6


def test_reports_from_zip(tmp_path, mirror):
    config = make_config(tmp_path, mirror.base_url, reports="zip")
    summary = download(config, tmp_path / "raw", credentials=CREDS)
    assert summary["reports_fetched_or_present"] == 4
    assert mirror.file_requests(".txt") == 5  # the five SHA256SUMS.txt, no single report
    reports = sorted((tmp_path / "raw/physionet.org/files/mimic-cxr/2.1.0/files").rglob("*.txt"))
    assert [p.stem for p in reports] == ["s50000001", "s50000002", "s50000005", "s50000006"]


def test_credentials_from_env_then_netrc(tmp_path):
    assert get_credentials("https://physionet.org/files/", environ={"PHYSIONET_USERNAME": "u", "PHYSIONET_PASSWORD": "p"}).username == "u"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine physionet.org login bob password hunter2\n")
    os.chmod(netrc, 0o600)
    c = get_credentials("https://physionet.org/files/", netrc_path=netrc, environ={})
    assert (c.username, c.password) == ("bob", "hunter2") and "hunter2" not in repr(c)
    with pytest.raises(CredentialsError) as err:
        get_credentials("https://physionet.org/files/", netrc_path=tmp_path / "none", environ={})
    assert "PHYSIONET_USERNAME" in str(err.value)
    with pytest.raises(CredentialsError):
        get_credentials("https://physionet.org/files/", environ={"PHYSIONET_USERNAME": "u"})


def test_needed_files_rule(served):
    roots = {n: served / "files" / s for n, s in [("mimic_cxr_jpg", "mimic-cxr-jpg/2.1.0"), ("medical_diff_vqa", "medical-diff-vqa/1.0.1"),
                                                   ("ms_cxr", "ms-cxr/1.1.0")]}
    images, reports, stats = needed_files(roots, Ledger("acquire"))
    assert images == NEEDED_IMAGES
    assert image_rel("50000001", 2) not in images  # lateral of a kept study
    assert image_rel("50000004", 5) not in images  # PA of a dropped pair
    assert stats["mscxr_images"] == 1 and len(reports) == 4


def test_local_manifest_hashes_tables_and_checks_them(tmp_path, served):
    config = make_config(tmp_path, "https://physionet.org/files/")
    config["source"] = "local"
    config["local"]["raw_dir"] = str(served.parent)
    df = build_local_manifest(config, tmp_path / "m.parquet", tmp_path / "l.tsv", tmp_path / "c.tsv")
    tables = df[df["sha256"].notna()]
    assert {"mimic-cxr-2.0.0-metadata.csv.gz", "hosp/patients.csv.gz", "mimic_pair_questions.csv"} <= set(tables["path"])
    assert df[df["path"].str.endswith(".jpg")]["sha256"].isna().all() and (df["path"].str.endswith(".jpg")).sum() == 9
    assert not df["path"].str.endswith("index.html").any()
    df2 = build_local_manifest(config, tmp_path / "m2.parquet", tmp_path / "l.tsv", tmp_path / "c.tsv", verify_images=True)
    assert df2[df2["path"].str.endswith(".jpg")]["sha256"].notna().all()
    build_local_manifest(config, tmp_path / "m3.parquet", tmp_path / "l.tsv", tmp_path / "c.tsv")
    assert (tmp_path / "m.parquet").read_bytes() == (tmp_path / "m3.parquet").read_bytes()


def _run_snakemake(workdir: Path, targets: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO_ROOT / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "1", *targets]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_snakemake_physionet_source_downloads_and_leaks_no_password(tmp_path, mirror):
    """The download rules through Snakemake, credentials only in the environment of the process."""
    work = tmp_path / "work"
    work.mkdir()
    config = make_config(tmp_path, mirror.base_url)
    config["results_dir"] = "results"
    config["physionet"]["workers"] = 2
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
    env.update(PHYSIONET_USERNAME=USER, PHYSIONET_PASSWORD=PASSWORD, HOME=str(tmp_path))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    targets = ["results/raw/physionet_manifest.parquet", "results/raw/physionet_summary.json"]
    proc = _run_snakemake(work, targets, env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((work / "results/raw/physionet_summary.json").read_text())
    assert summary["images_fetched_or_present"] == 6 and summary["reports_fetched_or_present"] == 4
    assert mirror.file_requests(".jpg") == 6
    manifest = pd.read_parquet(work / "results/raw/physionet_manifest.parquet")
    assert manifest["path"].str.endswith(".jpg").sum() == 6
    assert (work / "results/raw/physionet/physionet.org/files/mimic-cxr-jpg/2.1.0" / NEEDED_IMAGES[0]).is_file()
    # the password is nowhere: not in results/, logs, .snakemake/ metadata, nor in Snakemake's output
    scanned = 0
    for path in work.rglob("*"):
        if path.is_file():
            scanned += 1
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert scanned > 20 and any((work / ".snakemake").rglob("*"))
    assert PASSWORD not in proc.stdout + proc.stderr
    log_text = (work / "results/logs/acquire/physionet_images.log").read_text()
    assert USER in (work / "results/logs/acquire/physionet_tables.log").read_text() and "images" in log_text
    # wrong credentials: the rule fails with the clear message in its log, still no password anywhere
    env["PHYSIONET_PASSWORD"] = "Wrong-Pa55-qq"
    (work / "results/raw/physionet_tables_manifest.parquet").unlink()
    import shutil

    shutil.rmtree(work / "results/raw/physionet")  # nothing present: the server must be asked
    bad = _run_snakemake(work, ["results/raw/physionet_tables_manifest.parquet"], env)
    assert bad.returncode != 0
    assert "data use agreement" in (work / "results/logs/acquire/physionet_tables.log").read_text()
    for path in work.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and b"Wrong-Pa55-qq" not in data, path
    assert "Wrong-Pa55-qq" not in bad.stdout + bad.stderr


@pytest.fixture(scope="module")
def demo_served(tmp_path_factory):
    generate = pytest.importorskip("instructx2x.synthetic.generate")
    out = tmp_path_factory.mktemp("demo")
    generate.generate_dataset(out, patients=8, seed=7)
    return out / "physionet.org"


def test_demo_dataset_download_then_ingest_reads_it_unchanged(tmp_path, demo_served):
    """The synthetic demo served as PhysioNet: only needed images fetched, and ingest reads the result."""
    from instructx2x.ingest import ingest

    with PhysioNetMirror(demo_served, USER, PASSWORD) as m:
        config = make_config(tmp_path, m.base_url)
        raw = tmp_path / "results/raw/physionet"
        summary = download(config, raw, credentials=CREDS)
        served_jpgs = {p.split("/2.1.0/", 1)[1] for p in m.files_served(".jpg")}
    jpg_root = raw / "physionet.org/files/mimic-cxr-jpg/2.1.0"
    all_jpgs = {l.split(" ", 1)[1] for l in (jpg_root / "SHA256SUMS.txt").read_text().splitlines() if l.endswith(".jpg")}
    on_disk = {p.relative_to(jpg_root).as_posix() for p in (jpg_root / "files").rglob("*.jpg")}
    assert on_disk == served_jpgs and len(on_disk) == summary["images_needed"] < len(all_jpgs)
    # independent check of the rule: PA images of both studies of each difference pair with PA on both sides
    meta = pd.read_csv(jpg_root / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    vqa = pd.read_csv(raw / "physionet.org/files/medical-diff-vqa/1.0.1/mimic_pair_questions.csv", dtype=str)
    pa = meta[meta["ViewPosition"] == "PA"]
    diff = vqa[vqa["question_type"] == "difference"]
    diff = diff[diff["study_id"].isin(pa["study_id"]) & diff["ref_id"].isin(pa["study_id"])]
    studies = set(diff["study_id"]) | set(diff["ref_id"])
    expected = {f"files/p{r.subject_id[:2]}/p{r.subject_id}/s{r.study_id}/{r.dicom_id}.jpg"
                for r in pa[pa["study_id"].isin(studies)].itertuples()}
    boxes = pd.read_csv(raw / "physionet.org/files/ms-cxr/1.1.0/MS_CXR_Local_Alignment_v1.1.0.csv", dtype=str)
    assert on_disk == expected | set(boxes["path"])
    # ingest, unchanged, reads the downloaded tree (source physionet)
    counts = ingest(config, out_dir=tmp_path / "tables", ledger_path=tmp_path / "il.tsv", counts_path=tmp_path / "ic.tsv")
    images = pd.read_parquet(tmp_path / "tables/images.parquet")
    assert len(images) == len(meta) and counts
    present = images[images["image_path"].map(lambda p: Path(p).is_file())]
    assert set(present["path"]) == on_disk
    reports = pd.read_parquet(tmp_path / "tables/reports.parquet")
    assert set(reports["study_id"].astype(str)) == studies


@pytest.mark.slow
def test_snakemake_physionet_source_feeds_ingest_on_the_demo(tmp_path, demo_served):
    """`source: physionet` through Snakemake up to ingest, the demo dataset served on loopback."""
    work = tmp_path / "work"
    work.mkdir()
    with PhysioNetMirror(demo_served, USER, PASSWORD) as m:
        config = make_config(tmp_path, m.base_url)
        config["results_dir"] = "results"
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
        env.update(PHYSIONET_USERNAME=USER, PHYSIONET_PASSWORD=PASSWORD, HOME=str(tmp_path))
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        proc = _run_snakemake(work, ["results/tables/images.parquet", "results/raw/physionet_summary.json"], env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        n_jpg = m.file_requests(".jpg")
    summary = json.loads((work / "results/raw/physionet_summary.json").read_text())
    assert n_jpg == summary["images_needed"] == summary["images_transferred"] > 0
    images = pd.read_parquet(work / "results/tables/images.parquet")
    assert images["image_path"].map(lambda p: Path(p).is_file()).sum() == n_jpg
    for path in work.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_snakemake_local_source_writes_the_manifest_ingest_needs(tmp_path, demo_served):
    work = tmp_path / "work"
    work.mkdir()
    config = make_config(tmp_path, "https://physionet.org/files/")
    config.update(source="local", results_dir="results")
    config["local"]["raw_dir"] = str(demo_served.parent)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = _run_snakemake(work, ["results/tables/images.parquet"], env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = pd.read_parquet(work / "results/raw/local_manifest.parquet")
    tables = manifest[manifest["path"].str.endswith((".csv", ".csv.gz", ".json"))]
    assert tables["sha256"].notna().all() and len(tables) >= 10
    assert manifest["path"].str.endswith(".jpg").sum() == len(pd.read_parquet(work / "results/tables/images.parquet"))
