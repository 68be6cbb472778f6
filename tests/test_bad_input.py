"""Bad input, everywhere: a one-line error (exit 2) or a ledger entry with its reason, never a traceback and
never a silently wrong result.

Each test feeds one kind of bad input and asserts the message (or exit code, or ledger reason) and that
the good items next to it went through unchanged. Fast: stage functions are called directly on the small
hand-made tree of ``test_ingest.make_raw`` or a 2-patient demo tree; CLI cases go through
``instructx2x.cli.main`` in-process.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from instructx2x.cli import main as cli_main
from instructx2x.core.config import REPO_ROOT, ConfigError, load_config, validate_config
from instructx2x.core.errors import InputError
from instructx2x.core.images import UnreadableImage, read_gray
from instructx2x.core.ledger import read_ledger
from instructx2x.core.tableschema import TableError
from test_ingest import D, make_config, make_raw, run_ingest

JPG_ROOT = "physionet.org/files/mimic-cxr-jpg/2.1.0"
VQA_CSV = "physionet.org/files/medical-diff-vqa/1.0.1/mimic_pair_questions.csv"


# --------------------------------------------------------------------------------------------- helpers


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_one_line_error(err: str, *needles: str) -> None:
    """An expected error: ``error: ...`` on stderr (one or a few lines), no traceback, naming what matters."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 12, err
    for needle in needles:
        assert needle in err, (needle, err)


def write_config(tmp_path: Path, edit=None, name: str = "config.yaml") -> Path:
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    if edit:
        edit(config)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def ledger_rows(config: dict, stage: str = "ingest") -> list[dict]:
    return read_ledger(Path(config["results_dir"]) / "ledger" / f"{stage}.tsv")


def table(config: dict, name: str) -> pd.DataFrame:
    """A written table, its absolute paths cut to their part inside the raw tree (comparable across trees)."""
    df = pd.read_parquet(Path(config["results_dir"]) / "tables" / f"{name}.parquet")
    for col in ("image_path", "report_path"):
        if col in df.columns:
            df[col] = df[col].str.replace(r"^.*/physionet\.org/", "physionet.org/", regex=True)
    return df


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def anatomy(n: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n]
    return ((np.sin(xx / 5.0) + np.cos(yy / 7.0) + 2) * 60).astype(np.uint8)


@pytest.fixture()
def raw(tmp_path) -> Path:
    path = tmp_path / "raw"
    make_raw(path)
    return path


@pytest.fixture(scope="module")
def good_tables(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The tables of the unmodified hand-made tree: what the good items must still look like."""
    tmp = tmp_path_factory.mktemp("good")
    make_raw(tmp / "raw")
    config = make_config(tmp, tmp / "raw")
    run_ingest(config)
    return {name: table(config, name) for name in ("images", "vqa", "reports", "mscxr_boxes", "studies")}


def _edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# ------------------------------------------------------------------------------------ tables (ingest)


def test_empty_answer_cell_is_a_ledger_entry_and_the_run_completes(tmp_path, raw, good_tables):
    _edit_csv(raw / VQA_CSV, "which view is this image taken?,AP view,train", "which view is this image taken?,,train")
    config = make_config(tmp_path, raw)
    counts = run_ingest(config)
    entries = [r for r in ledger_rows(config) if r["reason"] == "empty_answer"]
    assert len(entries) == 1 and entries[0]["item_id"] == "mimic_pair_questions.csv:3"
    assert "line 3, column 'answer'" in entries[0]["detail"]
    vqa = table(config, "vqa")
    good = good_tables["vqa"]
    assert counts["vqa"] == len(good) - 1
    # the other rows are unchanged, including their CSV row numbers
    pd.testing.assert_frame_equal(vqa, good[good["row"] != 1].reset_index(drop=True))
    for name in ("images", "reports", "studies"):
        pd.testing.assert_frame_equal(table(config, name), good_tables[name])


def test_empty_question_cell_is_a_ledger_entry(tmp_path, raw, good_tables):
    _edit_csv(raw / VQA_CSV, "difference,what has changed compared to the reference image?,nothing",
              "difference,,nothing")
    config = make_config(tmp_path, raw)
    run_ingest(config)
    assert [r["reason"] for r in ledger_rows(config) if r["item_type"] == "table_row"] == ["empty_question"]
    good = good_tables["vqa"]
    pd.testing.assert_frame_equal(table(config, "vqa"), good[good["row"] != 3].reset_index(drop=True))


def test_empty_mscxr_label_text_sets_the_box_aside(tmp_path, raw, good_tables):
    path = raw / "physionet.org/files/ms-cxr/1.1.0/MS_CXR_Local_Alignment_v1.1.0.csv"
    _edit_csv(path, "Small left pleural effusion,", ",")
    config = make_config(tmp_path, raw)
    run_ingest(config)
    assert [r["reason"] for r in ledger_rows(config) if r["item_type"] == "table_row"] == ["empty_label_text"]
    assert len(table(config, "mscxr_boxes")) == 0
    pd.testing.assert_frame_equal(table(config, "vqa"), good_tables["vqa"])


def test_bad_id_in_a_row_stays_a_table_error_with_file_line_and_column(tmp_path, raw):
    _edit_csv(raw / VQA_CSV, "54444444,12222222,53333333", "54444444,12222222,5333333x")
    with pytest.raises(TableError, match=r"mimic_pair_questions\.csv: line 5 \(data row 3\), column 'ref_id'"):
        run_ingest(make_config(tmp_path, raw))


def test_duplicate_dicom_id_names_the_line(tmp_path, raw):
    path = raw / JPG_ROOT / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode()
    lines = text.splitlines()
    lines.append(lines[1])
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(TableError, match=r"line 7 \(data row 5\), column\(s\) \['dicom_id'\]: expected unique values"):
        run_ingest(make_config(tmp_path, raw))


def test_empty_csv_file(tmp_path, raw):
    (raw / VQA_CSV).write_text("")
    with pytest.raises(TableError, match=r"mimic_pair_questions\.csv: line 1: the file is empty; expected a CSV header"):
        run_ingest(make_config(tmp_path, raw))


def test_invalid_json_names_line_and_column(tmp_path, raw):
    path = raw / "physionet.org/files/medical-diff-vqa/1.0.1/all_diseases.json"
    path.write_text(path.read_text()[:-5])
    with pytest.raises(TableError, match=r"all_diseases\.json: line \d+, column \d+: invalid JSON"):
        run_ingest(make_config(tmp_path, raw))


def test_missing_table_is_an_input_error(tmp_path, raw):
    (raw / "physionet.org/files/medical-diff-vqa/1.0.1/all_diseases.json").unlink()
    with pytest.raises(InputError, match=r"all_diseases\.json: missing"):
        run_ingest(make_config(tmp_path, raw))


def test_report_not_utf8_is_set_aside(tmp_path, raw, good_tables):
    (raw / "physionet.org/files/mimic-cxr/2.1.0/files/p11/p11111111/s52222222.txt").write_bytes(b"caf\xe9 \xff\n")
    config = make_config(tmp_path, raw)
    run_ingest(config)
    aside = [r for r in ledger_rows(config) if r["reason"] == "unreadable_report"]
    assert len(aside) == 1 and "s52222222.txt" in aside[0]["item_id"] and "not UTF-8" in aside[0]["detail"]
    good = good_tables["reports"]
    pd.testing.assert_frame_equal(table(config, "reports"), good[good["study_id"] != 52222222].reset_index(drop=True))


def test_cli_malformed_table_is_one_line_exit_2(tmp_path, raw, capsys):
    path = raw / JPG_ROOT / "mimic-cxr-2.0.0-metadata.csv.gz"
    path.write_bytes(path.read_bytes()[:40])  # truncated gzip
    cfg = write_config(tmp_path)
    rc, _, err = run_cli(capsys, "ingest", "--config", cfg, "--raw-dir", raw)
    assert rc == 2
    assert_one_line_error(err, "metadata.csv.gz: truncated or corrupt gzip")


def test_cli_missing_dataset_folder(tmp_path, capsys):
    cfg = write_config(tmp_path)
    rc, _, err = run_cli(capsys, "ingest", "--config", cfg, "--raw-dir", tmp_path / "nowhere")
    assert rc == 2
    assert_one_line_error(err, "dataset mimic_cxr_jpg: folder", "does not exist")


def test_cli_debug_shows_the_traceback(tmp_path):
    cfg = write_config(tmp_path)
    with pytest.raises(InputError):
        cli_main(["ingest", "--config", str(cfg), "--raw-dir", str(tmp_path / "nowhere"), "--debug"])


# ------------------------------------------------------------------- checksums: quarantine, real message


def _sums(root: Path, wrong: set[str] = frozenset()) -> None:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ("index.html", "SHA256SUMS.txt")):
        rel = path.relative_to(root).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{'0' * 64 if rel in wrong else digest} {rel}")
    (root / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


def test_checksum_mismatched_image_is_quarantined_and_never_reaches_a_table(tmp_path, raw, good_tables):
    from instructx2x.acquire.local_manifest import build_local_manifest

    root = raw / JPG_ROOT
    bad_rel = f"files/p11/p11111111/s51111111/{D[0]}.jpg"
    _sums(root, wrong={bad_rel})
    config = make_config(tmp_path, raw)
    config["physionet"]["verify_local_images"] = True
    res = Path(config["results_dir"])
    manifest = build_local_manifest(config, res / "raw/local_manifest.parquet", res / "ledger/acquire.tsv",
                                    res / "ledger/acquire.counts.tsv")
    assert bad_rel not in set(manifest["path"])
    assert f"files/p11/p11111111/s51111111/{D[1]}.jpg" in set(manifest["path"])
    acq = [r for r in ledger_rows(config, "acquire") if r["reason"] == "sha256_mismatch"]
    assert [r["item_id"] for r in acq] == [f"mimic_cxr_jpg/{bad_rel}"] and "quarantined" in acq[0]["detail"]

    ingest_from = __import__("instructx2x.ingest", fromlist=["ingest"]).ingest
    ingest_from(config, res / "tables", res / "ledger/ingest.tsv", res / "ledger/ingest.counts.tsv",
                manifest_path=res / "raw/local_manifest.parquet")
    images = table(config, "images")
    assert D[0] not in set(images["dicom_id"])
    assert [r["item_id"] for r in ledger_rows(config) if r["reason"] == "not_in_raw_manifest"] == [D[0]]
    good = good_tables["images"]
    pd.testing.assert_frame_equal(images, good[good["dicom_id"] != D[0]].reset_index(drop=True))


def test_checksum_mismatched_report_is_quarantined(tmp_path, raw, good_tables):
    from instructx2x.acquire.local_manifest import build_local_manifest
    from instructx2x.ingest import ingest

    root = raw / "physionet.org/files/mimic-cxr/2.1.0"
    bad_rel = "files/p11/p11111111/s52222222.txt"
    _sums(root, wrong={bad_rel})
    config = make_config(tmp_path, raw)
    res = Path(config["results_dir"])
    build_local_manifest(config, res / "m.parquet", res / "ledger/acquire.tsv", res / "ledger/acquire.counts.tsv",
                         verify_images=True)
    ingest(config, res / "tables", res / "ledger/ingest.tsv", res / "ledger/ingest.counts.tsv", manifest_path=res / "m.parquet")
    good = good_tables["reports"]
    pd.testing.assert_frame_equal(table(config, "reports"), good[good["study_id"] != 52222222].reset_index(drop=True))


def test_table_checksum_mismatch_stops_with_the_real_message(tmp_path, raw):
    from instructx2x.acquire.local_manifest import build_local_manifest

    root = raw / JPG_ROOT
    _sums(root, wrong={"mimic-cxr-2.0.0-split.csv.gz"})
    config = make_config(tmp_path, raw)
    with pytest.raises(InputError, match=r"mimic-cxr-2\.0\.0-split\.csv\.gz: SHA-256 [0-9a-f]{64} does not match .*corrupt"):
        build_local_manifest(config, tmp_path / "m.parquet", tmp_path / "l.tsv", tmp_path / "c.tsv")


def test_workflow_script_error_reaches_the_terminal_not_only_the_log(tmp_path):
    """What Snakemake shows as 'message: None': the hook puts the real message on the terminal and in the log."""
    log = tmp_path / "job.log"
    script = textwrap.dedent(f"""
        import sys
        from instructx2x.core.errors import report_stage_errors
        report_stage_errors()
        sys.stderr = open({str(log)!r}, "a")
        from instructx2x.core.errors import InputError
        raise InputError("x.csv.gz: SHA-256 abc does not match SHA256SUMS.txt (def); the copy is corrupt")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: x.csv.gz: SHA-256 abc does not match SHA256SUMS.txt (def); the copy is corrupt"
    assert "does not match" in log.read_text() and "Traceback" not in log.read_text()


# --------------------------------------------------------------------------- complete-or-nothing demo tree


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    from instructx2x.synthetic.generate import generate_dataset

    out = tmp_path_factory.mktemp("small_demo")
    generate_dataset(out, patients=2, seed=3)
    return out


def _demo_copy(small_demo: Path, tmp_path: Path) -> tuple[Path, dict]:
    raw = tmp_path / "demo"
    shutil.copytree(small_demo, raw)
    return raw, make_config(tmp_path, raw)


def test_complete_demo_tree_is_accepted(small_demo, tmp_path):
    raw, config = _demo_copy(small_demo, tmp_path)
    counts = run_ingest(config)
    assert counts["images"] > 0 and json.loads((raw / "demo_data.json").read_text())["complete"] is True


def test_interrupted_demo_data_is_refused(small_demo, tmp_path, monkeypatch):
    """A demo-data run killed midway: the marker stays 'not complete' and ingest refuses the tree in one line."""
    from instructx2x.synthetic import generate

    raw, config = _demo_copy(small_demo, tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "_render_images", killed)
    with pytest.raises(KeyboardInterrupt):
        generate.generate_dataset(raw, patients=2, seed=3)
    assert json.loads((raw / "demo_data.json").read_text())["complete"] is False
    with pytest.raises(InputError, match=r"incomplete demo dataset: demo_data\.json says demo-data did not finish"):
        run_ingest(config)


def test_demo_tree_without_marker_is_refused(small_demo, tmp_path, capsys):
    raw, _ = _demo_copy(small_demo, tmp_path)
    (raw / "demo_data.json").unlink()
    cfg = write_config(tmp_path, lambda c: c.update(source="demo", results_dir=str(raw.parent / "res")))
    # source: demo reads <results>/raw/demo; point it at the copy
    (raw.parent / "res" / "raw").mkdir(parents=True)
    (raw.parent / "res" / "raw" / "demo").symlink_to(raw)
    rc, _, err = run_cli(capsys, "ingest", "--config", cfg)
    assert rc == 2
    assert_one_line_error(err, "incomplete demo dataset: no demo_data.json", "demo-data")


def test_demo_tree_with_missing_jpgs_is_refused(small_demo, tmp_path):
    raw, config = _demo_copy(small_demo, tmp_path)
    jpgs = sorted((raw / JPG_ROOT / "files").rglob("*.jpg"))
    for p in jpgs[:3]:
        p.unlink()
    with pytest.raises(InputError, match=r"3 file\(s\) listed in its SHA256SUMS\.txt are missing \(first: .*\.jpg\)"):
        run_ingest(config)


def test_demo_data_cli_bad_arguments(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "demo-data", tmp_path / "d", "--patients", "1")
    assert rc == 2
    assert_one_line_error(err, "--patients", "at least 2")
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(capsys, "demo-data", tmp_path / "file", "--patients", "2")
    assert rc == 2
    assert_one_line_error(err, "is not a folder")


# ------------------------------------------------------------------------------------------------ config


PYRAMID_BAD = [
    (lambda c: c["registration"].update(smoothing_sigmas=[4.0, 2.0, 1.0]),
     "registration.smoothing_sigmas: 3 value(s) [4.0, 2.0, 1.0], but shrink_factors has 4 pyramid level(s)"),
    (lambda c: c["registration"].update(shrink_factors=[4, 2, 1]), "registration.samples: 4 value(s)"),
    (lambda c: c["registration"].update(resolution=100), "registration.resolution: 100; expected a multiple of 8"),
    (lambda c: c["registration"].update(start_scales=[0.9, 1.1]), "registration.start_scales: [0.9, 1.1]; expected an odd number"),
    (lambda c: c["registration"].update(refine_starts=99), "registration.refine_starts: 99, but the start grid has only"),
    (lambda c: c["evaluation"].update(splits=["val"]), "evaluation.splits: ['val'] not edited by inference"),
    (lambda c: c["instructions"].update(fractions={"train": 0, "val": 0, "test": 0}), "instructions.fractions"),
    (lambda c: c["masks"].update(resolution=100), "masks.resolution: 100"),
    (lambda c: c["training"].update(prediction_base="image", prediction_type="epsilon"),
     "training.prediction_base: image, but training.prediction_type is 'epsilon'"),
]


@pytest.mark.parametrize("edit,message", PYRAMID_BAD, ids=[m.split(":")[0] for _, m in PYRAMID_BAD])
def test_cross_field_config_rules_fail_at_load(tmp_path, edit, message, capsys):
    cfg = write_config(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert message in str(info.value)
    rc, _, err = run_cli(capsys, "ingest", "--config", cfg)  # every subcommand loads (and so checks) the config
    assert rc == 2
    assert_one_line_error(err, message)


def test_good_config_passes_the_cross_field_rules():
    validate_config(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))


def test_config_file_missing_or_not_yaml(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "ingest", "--config", tmp_path / "nope.yaml")
    assert rc == 2
    assert_one_line_error(err, "nope.yaml: config file not found")
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\nsource: demo\n")
    rc, _, err = run_cli(capsys, "ingest", "--config", tmp_path / "bad.yaml")
    assert rc == 2
    assert_one_line_error(err, "bad.yaml: not valid YAML")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    rc, _, err = run_cli(capsys, "ingest", "--config", tmp_path / "list.yaml")
    assert rc == 2
    assert_one_line_error(err, "expected a mapping of keys")


def test_config_unknown_key_and_wrong_type(tmp_path, capsys):
    cfg = write_config(tmp_path, lambda c: (c.update(sede=1), c["registration"].update(shards="two")))
    rc, _, err = run_cli(capsys, "ingest", "--config", cfg)
    assert rc == 2
    assert_one_line_error(err, "registration.shards: 'two' is not of type 'integer'", "'sede' was unexpected")


# --------------------------------------------------------------------------------------------- images


def test_16bit_png_is_windowed_not_white():
    arr16 = (anatomy().astype(np.uint16) * 200 + 1000)
    data = png_bytes(arr16)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    gray = read_gray(data)
    assert gray.min() == 0 and gray.max() == 255 and 40 < gray.mean() < 215
    assert np.corrcoef(gray.ravel().astype(float), arr16.ravel().astype(float))[0, 1] > 0.999


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: png_bytes(np.full((64, 64), 128, np.uint8)), "constant or near-constant image"),
        (lambda: png_bytes(anatomy(8)), "image is 8x8 pixels; at least 16 px per side expected"),
        (lambda: png_bytes(anatomy())[:200], "cannot decode image"),
        (lambda: b"this is not an image\n", "cannot decode image (not an image file"),
        (lambda: b"", "cannot decode image"),
    ],
    ids=["constant", "too_small", "truncated", "text_file", "empty_file"],
)
def test_unusable_images_give_one_line_reasons(make, message):
    with pytest.raises(UnreadableImage) as info:
        read_gray(make())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb_states_the_limit():
    with pytest.raises(UnreadableImage, match=r"image is 64x64 = 4,096 pixels; the limit is 1,000 \(decompression-bomb guard\)"):
        read_gray(png_bytes(anatomy()), max_pixels=1000)


def test_views_ledger_keeps_the_readers_reason(tmp_path):
    """An undecodable / constant image in the pipeline: the views ledger says why, the good image is kept."""
    from instructx2x.views import decide_pa

    good, flat, broken = tmp_path / "good.png", tmp_path / "flat.png", tmp_path / "broken.jpg"
    good.write_bytes(png_bytes(anatomy()))
    flat.write_bytes(png_bytes(np.zeros((64, 64), np.uint8)))
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ids = [f"{i:08x}-00000000-00000000-00000000-00000000" for i in range(3)]
    images = pd.DataFrame({"dicom_id": ids, "subject_id": [10000001] * 3, "study_id": [50000001, 50000002, 50000003],
                           "ViewPosition": ["PA"] * 3, "image_path": [str(good), str(flat), str(broken)]})
    images.to_parquet(tmp_path / "images.parquet")
    errors = []
    for p in images["image_path"]:
        try:
            read_gray(p)
            errors.append("")
        except UnreadableImage as exc:
            errors.append(str(exc))
    scores = pd.DataFrame({"dicom_id": ids, "p_lateral": [0.1, np.nan, np.nan], "error": errors})
    scores.to_parquet(tmp_path / "scores.parquet")
    df = decide_pa(tmp_path / "images.parquet", tmp_path / "scores.parquet", tmp_path / "pa.parquet",
                   ledger_path=tmp_path / "views.tsv", counts_path=tmp_path / "views.counts.tsv")
    assert df["is_pa"].tolist() == [True, False, False]
    ledger = {r["item_id"]: r for r in read_ledger(tmp_path / "views.tsv")}
    assert "constant or near-constant image" in ledger[ids[1]]["detail"]
    assert "cannot decode image" in ledger[ids[2]]["detail"] and "broken.jpg" in ledger[ids[2]]["detail"]


def test_register_cli_unreadable_and_missing_images(tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(anatomy()))
    (tmp_path / "notes.png").write_text("not an image")
    rc, _, err = run_cli(capsys, "register", good, tmp_path / "notes.png", "--out", tmp_path / "o.png")
    assert rc == 2
    assert_one_line_error(err, "notes.png: cannot decode image")
    rc, _, err = run_cli(capsys, "register", tmp_path / "absent.png", good, "--out", tmp_path / "o.png")
    assert rc == 2
    assert_one_line_error(err, "absent.png: no such file")
    assert not (tmp_path / "o.png").exists()


def test_edit_cli_missing_image(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "edit", "--model", tmp_path, "--image", tmp_path / "none.png",
                         "--instruction", "Add a small left pleural effusion", "--out", tmp_path / "o.png")
    assert rc == 2
    assert_one_line_error(err, "none.png: no such file")


# ---------------------------------------------------------------------------- CLI arguments and models


def test_parse_instruction_cli_rejects_gibberish_and_empty(capsys):
    rc, out, err = run_cli(capsys, "parse-instruction", "Add a moderate left pleural effusion")
    assert rc == 0 and json.loads(out)[0]["finding"] == "pleural effusion"
    rc, out, err = run_cli(capsys, "parse-instruction", "blorp the zorp")
    assert rc == 2 and out == ""
    assert_one_line_error(err)
    rc, out, err = run_cli(capsys, "parse-instruction", "   ")
    assert rc == 2
    assert_one_line_error(err, "empty instruction")


def test_unknown_subcommand_and_bad_argument_type_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["no-such-command"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli_main(["demo-data", "x", "--patients", "many"])
    assert info.value.code == 2 and "invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["demo-data", "OUT", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["evaluate", "--records", "r", "--tables", "t", "--out", "o", "--bootstrap", "0"], "argument --bootstrap: expected an integer >= 1"),
        (["train", "--instructions", "i", "--out", "o", "--steps", "-3"], "argument --steps: expected an integer >= 1"),
        (["download", "--dest", "d", "--workers", "0"], "argument --workers: expected an integer >= 1"),
    ],
    ids=["negative_seed", "zero_bootstrap", "negative_steps", "zero_workers"],
)
def test_out_of_range_numbers_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err


def test_register_resolution_override_is_validated_like_the_config(tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(anatomy()))
    rc, _, err = run_cli(capsys, "register", good, good, "--out", tmp_path / "o.png", "--resolution", "100")
    assert rc == 2
    assert_one_line_error(err, "registration.resolution: 100; expected a multiple of 8")
    assert not (tmp_path / "o.png").exists()


def test_download_without_credentials_names_what_to_set(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = write_config(tmp_path)
    rc, _, err = run_cli(capsys, "download", "--dest", tmp_path / "dl", "--config", cfg)
    assert rc == 2
    assert_one_line_error(err, "no PhysioNet credentials", "PHYSIONET_USERNAME")
    monkeypatch.setenv("PHYSIONET_PASSWORD", "hunter2-secret")
    rc, out, err = run_cli(capsys, "download", "--dest", tmp_path / "dl", "--config", cfg)
    assert rc == 2
    assert_one_line_error(err, "PHYSIONET_USERNAME is not set")
    assert "hunter2-secret" not in err + out


def _instructions(tmp_path: Path, drop: tuple = ()) -> Path:
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes(anatomy()))
    df = pd.DataFrame({"pair_id": ["50000002_50000001"], "split": ["train"], "past_image": [str(img)],
                       "current_image": [str(img)], "instruction": ["Add a small left pleural effusion"]})
    path = tmp_path / "instructions.parquet"
    df.drop(columns=list(drop)).to_parquet(path)
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda t: t / "missing.parquet", "missing.parquet: no such file; expected an instructions table"),
        (lambda t: (t / "i.parquet").write_text("pair_id,split\n") and t / "i.parquet", "not a readable parquet table"),
        (lambda t: _instructions(t, drop=("instruction",)), "missing column(s) ['instruction']"),
        (lambda t: t, "is a folder; expected an instructions table"),
    ],
    ids=["missing", "not_parquet", "missing_column", "folder"],
)
def test_train_cli_bad_instructions_table(tmp_path, capsys, make, message):
    cfg = write_config(tmp_path)
    rc, _, err = run_cli(capsys, "train", "--instructions", make(tmp_path), "--out", tmp_path / "out", "--config", cfg)
    assert rc == 2
    assert_one_line_error(err, message)


def test_train_cli_pretrained_folder_that_is_not_a_model(tmp_path, capsys):
    cfg = write_config(tmp_path)
    ins = _instructions(tmp_path)
    rc, _, err = run_cli(capsys, "train", "--instructions", ins, "--out", tmp_path / "o1", "--config", cfg,
                         "--pretrained", tmp_path / "absent")
    assert rc == 2
    assert_one_line_error(err, "absent: no such folder")
    (tmp_path / "m").mkdir()
    rc, _, err = run_cli(capsys, "train", "--instructions", ins, "--out", tmp_path / "o2", "--config", cfg,
                         "--pretrained", tmp_path / "m")
    assert rc == 2
    assert_one_line_error(err, "not a diffusers pipeline directory (no model_index.json)")
    (tmp_path / "m" / "model_index.json").write_text("{}")
    rc, _, err = run_cli(capsys, "train", "--instructions", ins, "--out", tmp_path / "o3", "--config", cfg,
                         "--pretrained", tmp_path / "m")
    assert rc == 2
    assert_one_line_error(err, "cannot load the pretrained model")


def test_evaluate_cli_bad_records_and_models(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "evaluate", "--records", tmp_path / "records.parquet", "--tables", tmp_path,
                         "--out", tmp_path / "ev")
    assert rc == 2
    assert_one_line_error(err, "records.parquet: no such file; expected inference records")
    rec = pd.DataFrame({"pair_id": ["p"], "subject_id": [1], "mode": ["sideways"], "status": ["ok"],
                        "input_path": ["a"], "target_path": ["b"], "edited_path": ["c"]})
    rec.to_parquet(tmp_path / "records.parquet")
    rc, _, err = run_cli(capsys, "evaluate", "--records", tmp_path / "records.parquet", "--tables", tmp_path,
                         "--out", tmp_path / "ev")
    assert rc == 2
    assert_one_line_error(err, "column 'mode' has ['sideways']; expected rse or wo_rse")
    rec.assign(mode="rse").to_parquet(tmp_path / "records.parquet")
    rc, _, err = run_cli(capsys, "evaluate", "--records", tmp_path / "records.parquet", "--tables", tmp_path,
                         "--out", tmp_path / "ev", "--backend", "trained")
    assert rc == 2
    assert_one_line_error(err, "studies.parquet: no such file; expected the ingest table studies.parquet")
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a torch file")
    from instructx2x.evaluation.evaluators import load_evaluator

    with pytest.raises(InputError, match=r"garbage\.pt: not an evaluator model"):
        load_evaluator("trained", model_path=tmp_path / "garbage.pt")
    with pytest.raises(InputError, match=r"absent\.pt: no such evaluator model file"):
        load_evaluator("trained", model_path=tmp_path / "absent.pt")
    with pytest.raises(InputError, match=r"needs the model file"):
        load_evaluator("trained")


def test_audit_cli_without_provenance_is_a_clear_failure(tmp_path, capsys):
    # no lineage: cannot audit (exit 2, one line naming the directory; issue 17's contract)
    rc, out, err = run_cli(capsys, "audit", tmp_path)
    assert rc == 2 and "Traceback" not in err and not out
    assert err.strip().startswith(f"error: cannot audit {tmp_path}: no lineage") and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------- end to end (Snakemake)


@pytest.mark.slow
def test_snakemake_quarantined_image_never_reaches_instructions(tmp_path, demo_dataset):
    """`source: local` + `verify_local_images`: images whose SHA-256 mismatches (still decodable JPGs) are
    quarantined by the acquisition rule and absent from every table down to instructions.parquet; the run
    completes. A corrupt table stops the run with its real message on the terminal."""
    raw = tmp_path / "raw"
    shutil.copytree(demo_dataset / "physionet.org", raw / "physionet.org")
    shutil.copy(demo_dataset / "demo_data.json", raw / "demo_data.json")
    truth_pairs = pd.read_parquet(demo_dataset / "ground_truth/pairs.parquet")
    truth_images = pd.read_parquet(demo_dataset / "ground_truth/images.parquet")
    study = int(truth_pairs["ref_id"].iloc[0])
    victims = truth_images[truth_images["study_id"] == study]["path"].tolist()
    assert victims
    for rel in victims:
        with open(raw / JPG_ROOT / rel, "ab") as fh:
            fh.write(b"\0")  # still a decodable JPEG, but not the file SHA256SUMS.txt lists
    res = tmp_path / "res"
    cfg = write_config(tmp_path, lambda c: (c.update(source="local", results_dir=str(res), local={"raw_dir": str(raw)}),
                                            c["physionet"].update(verify_local_images=True)))
    cmd = [str(REPO_ROOT / ".venv" / "bin" / "snakemake"), "-s", str(REPO_ROOT / "Snakefile"),
           "--directory", str(tmp_path), "--cores", "2", "--configfile", str(cfg)]
    proc = subprocess.run([*cmd, "--", str(res / "instructions" / "instructions.parquet")], capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    acq = [r for r in read_ledger(res / "ledger/acquire.tsv") if r["reason"] == "sha256_mismatch"]
    assert sorted(r["item_id"] for r in acq) == sorted(f"mimic_cxr_jpg/{v}" for v in victims)
    names = {Path(v).name for v in victims}
    images = pd.read_parquet(res / "tables/images.parquet")
    assert not names & {Path(p).name for p in images["image_path"]}
    ins = pd.read_parquet(res / "instructions/instructions.parquet")
    used = {Path(p).name for col in ins.columns if col.endswith("image") for p in ins[col].dropna().astype(str)}
    assert len(ins) > 0 and not names & used

    # a corrupt table: the job fails and the terminal shows the real message (not only 'message: None')
    sums = raw / JPG_ROOT / "SHA256SUMS.txt"
    sums.write_text("\n".join(("0" * 64 + l[64:]) if l.endswith("split.csv.gz") else l
                              for l in sums.read_text().splitlines()) + "\n")
    proc = subprocess.run([*cmd, "--forceall", "--", str(res / "tables" / "images.parquet")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0
    assert "error: " in proc.stderr and "split.csv.gz: SHA-256" in proc.stderr and "does not match" in proc.stderr
