"""Registration, its gate, image reading and editing on a small fixed subset of real radiographs.

The corpus is referenced at ``../shared/real-cxr`` (or ``$INSTRUCTX2X_REAL_CXR``; tests/real_cxr.py),
never copied. Real-data settings: the schema's defaults (``registration.resolution: 512``, the
real-data gate). Each registration at 512² takes about 1.5 s (mirror registration included).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

import real_cxr
from instructx2x import cli
from instructx2x.core.config import REPO_ROOT, validate_config
from instructx2x.core.images import read_gray
from instructx2x.registration.algorithm import RegistrationSettings, register_arrays
from instructx2x.registration.quality import transform_errors, transform_matrix_of
from instructx2x.registration.gate import GateSettings, gate_flag, gate_reason

pytestmark = pytest.mark.skipif(not real_cxr.available(), reason=f"real corpus not found at {real_cxr.corpus_root()} (set ${real_cxr.ENV})")

# The fixed subset (files of ../shared/real-cxr/images), from benchmarks/registration_real.py's run:
# consecutive PA studies of one patient that pass the paper's MI gate (c0173/c0174 has the smallest
# mirror_mi - mi of all, about +0.04; c0259/c0260 the lowest structure_ncc, about 0.4: kept and flagged),
# other-patient PA pairs, and a PA image for the transform / 16-bit cases.
SAME_PATIENT = [("c0177", "c0178"), ("c0173", "c0174"), ("c0259", "c0260")]
OTHER_PATIENT = [("c0171", "c0261"), ("c0177", "c0194")]
OTHER_PASSING_MI = ("c0261", "c0164")  # one of the 3 of 161 other-patient pairs the MI gate keeps
SINGLE = "c0178"


def real_data_config() -> dict:
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config["registration"] = {}  # the schema's defaults are the real-data settings
    return validate_config(config)


@pytest.fixture(scope="module")
def settings():
    section = real_data_config()["registration"]
    return RegistrationSettings.from_config(section, seed=1234), GateSettings.from_config(section)


def img(name: str) -> np.ndarray:
    return read_gray(real_cxr.corpus_root() / "images" / f"{name}.jpg")


def _row(res) -> dict:
    return {"status": "ok", **res.as_dict()}


def test_subset_is_what_it_claims():
    meta = real_cxr.metadata().assign(name=lambda m: m["file"].str[7:12]).set_index("name")
    for a, b in SAME_PATIENT:
        assert meta.loc[a, "patient"] == meta.loc[b, "patient"] and meta.loc[a, "view"] == meta.loc[b, "view"] == "PA"
    for a, b in OTHER_PATIENT + [OTHER_PASSING_MI]:
        assert meta.loc[a, "patient"] != meta.loc[b, "patient"]
    pairs = real_cxr.same_patient_pairs(real_cxr.metadata())
    consecutive = {(p.split("/")[-1][:5], c.split("/")[-1][:5]) for p, c in zip(pairs["past"], pairs["current"])}
    assert set(SAME_PATIENT) <= consecutive


@pytest.mark.parametrize("past,current", SAME_PATIENT)
def test_genuine_follow_ups_passing_the_mi_gate_are_kept(settings, past, current):
    s, g = settings
    res, _ = register_arrays(img(past), img(current), s)
    assert res.mi <= g.mi_threshold, res  # the paper's gate keeps them: so must we
    assert gate_reason(_row(res), g) == "", (res.as_dict(), g)


@pytest.mark.parametrize("past,current", OTHER_PATIENT)
def test_other_patient_pairs_are_not_kept(settings, past, current):
    s, g = settings
    res, _ = register_arrays(img(past), img(current), s)
    assert gate_reason(_row(res), g) != "", res.as_dict()


def test_other_patient_pair_passing_the_mi_gate_is_kept_but_flagged(settings):
    """The real-data limit, documented: no statistic rejects it reliably, so it is flagged, not rejected."""
    s, g = settings
    res, _ = register_arrays(img(OTHER_PASSING_MI[0]), img(OTHER_PASSING_MI[1]), s)
    assert res.mi <= g.mi_threshold and g.same_patient_action == "flag"
    assert gate_reason(_row(res), g) == "" and gate_flag(_row(res), g) == "wrong patient suspected", res.as_dict()


def test_mirrored_follow_up_is_flagged_as_a_mirror(settings):
    """The mirrored current of the follow-up closest to the mirror threshold (mirror_mi - mi about -0.04)."""
    s, g = settings
    past, current = SAME_PATIENT[1]
    res, _ = register_arrays(img(past), np.ascontiguousarray(img(current)[:, ::-1]), s)
    assert gate_reason(_row(res), g) == "mirror suspected", res.as_dict()


def test_known_transform_with_exposure_change_within_1px_at_512(settings):
    s, g = settings
    arr = img(SINGLE)
    moved, truth = real_cxr.warp(arr, seed=3)
    res, _ = register_arrays(arr, moved, s)
    est = transform_matrix_of(res.angle_rad, res.scale, res.tx, res.ty, res.center_x, res.center_y)
    angle_err, disp = transform_errors(est, truth, arr.shape, at=512)
    assert disp <= 1.0 and angle_err <= 0.5, (disp, angle_err)
    assert gate_reason(_row(res), g) == "" and gate_flag(_row(res), g) == ""


# The two worst of benchmarks/registration_real.py's known transforms with 32 histogram bins on every
# level (1.32 px and 1.24 px at 512²; c0401's patient is in the held-out half, c0380's in the calibration
# half): the case and its warp seed exactly as the benchmark builds them.
FORMERLY_OFF = ["c0401", "c0380"]


def _benchmark_known_transform(name: str):
    meta = real_cxr.metadata()
    pa = real_cxr.pa_images(meta)
    i = int(pa.index[pa["file"].str[7:12] == name][0])
    arr = read_gray(pa.loc[i, "path"])
    moved, truth = real_cxr.warp(arr, 0 * 100_000 + i)  # benchmarks/registration_real.py, --seed 0
    return arr, moved, truth


@pytest.mark.parametrize("name", FORMERLY_OFF)
def test_known_transforms_once_off_by_more_than_1px_are_within_1px(settings, name):
    """The finest pyramid level optimises 64-bin MI (level_histogram_bins): with 32 bins there these
    pairs end more than 1 px off at 512² (asserted, so this test can fail for the right reason)."""
    import dataclasses

    s, g = settings
    arr, moved, truth = _benchmark_known_transform(name)
    errors = {}
    for label, sv in (("ours", s), ("32 bins everywhere", dataclasses.replace(s, level_histogram_bins=None, mirror_check=False))):
        res, _ = register_arrays(arr, moved, sv)
        est = transform_matrix_of(res.angle_rad, res.scale, res.tx, res.ty, res.center_x, res.center_y)
        errors[label] = transform_errors(est, truth, arr.shape, at=512)[1]
        if label == "ours":
            assert gate_reason(_row(res), g) == "" and gate_flag(_row(res), g) == "", res.as_dict()
    assert errors["ours"] <= 1.0 < errors["32 bins everywhere"], errors


def _sixteen_bit(arr: np.ndarray, path) -> None:
    """A 16-bit copy as a detector would store it: 12-bit values with an offset (not 0-255)."""
    Image.fromarray((arr.astype(np.uint16) * 13 + 700).astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")


def test_16bit_copy_registers_to_its_8bit_copy_through_the_cli(tmp_path, capsys):
    arr = img(SINGLE)
    assert arr.min() == 0 and arr.max() == 255  # so windowing by its own range gives back the same grey levels
    Image.fromarray(arr).save(tmp_path / "eight.png")
    moved, truth = real_cxr.warp(arr, seed=5)
    _sixteen_bit(moved, tmp_path / "sixteen.png")
    lo, hi = int(moved.min()), int(moved.max())
    windowed = np.round((moved.astype(float) - lo) * 255.0 / (hi - lo))  # by its own range, not clipped
    assert np.abs(read_gray(tmp_path / "sixteen.png").astype(int) - windowed).max() <= 1
    cfg = real_data_config()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    rc = cli.main(["register", str(tmp_path / "eight.png"), str(tmp_path / "sixteen.png"), "--out", str(tmp_path / "al.png"),
                   "--config", str(tmp_path / "config.yaml"), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    est = transform_matrix_of(np.radians(d["angle_deg"]), d["scale"], d["tx"], d["ty"], (arr.shape[1] - 1) / 2, (arr.shape[0] - 1) / 2)
    assert transform_errors(est, truth, arr.shape, at=512)[1] <= 1.0
    assert d["accepted"] is True and d["reason"] == "kept" and d["resolution"] == 512


def test_register_cli_one_line_errors_for_constant_and_elongated_images(tmp_path, capsys):
    Image.fromarray(img(SINGLE)).save(tmp_path / "ok.png")
    Image.fromarray(np.full((300, 300), 77, np.uint8)).save(tmp_path / "flat.png")
    strip = np.tile(img(SINGLE)[300:320], (1, 2))  # 20 x ~1500 px: no pyramid can hold it
    Image.fromarray(strip).save(tmp_path / "strip.png")
    for moving, words in (("flat.png", "constant"), ("strip.png", "too elongated")):
        rc = cli.main(["register", str(tmp_path / "ok.png"), str(tmp_path / moving), "--out", str(tmp_path / "o.png")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and words in err and moving in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "itk" not in err.lower()


def test_images_of_different_pixel_size_register(settings):
    """One image downscaled (another pixel size, same field of view): the scale absorbs it."""
    s, g = settings
    arr = img(SINGLE)
    h, w = arr.shape
    small = np.asarray(Image.fromarray(arr).resize((round(w * 0.55), round(h * 0.55)), Image.BILINEAR))
    res, _ = register_arrays(arr, small, s)
    assert abs(res.scale - small.shape[1] / w) < 0.01 and abs(res.angle_deg) < 0.3, res.as_dict()
    assert gate_reason(_row(res), g) == ""


def test_16bit_copy_edits_the_same_way(tmp_path, capsys):
    from helpers.tiny_pipeline import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path / "model")
    arr = np.asarray(Image.fromarray(img(SINGLE)).resize((32, 32), Image.BILINEAR))
    arr = np.round((arr - arr.min()) * (255.0 / (arr.max() - arr.min()))).astype(np.uint8)  # full range, as read back
    Image.fromarray(arr).save(tmp_path / "eight.png")
    _sixteen_bit(arr, tmp_path / "sixteen.png")
    outs = []
    for name in ("eight", "sixteen"):
        out = tmp_path / f"edited_{name}.png"
        rc = cli.main(["edit", "--model", str(model), "--image", str(tmp_path / f"{name}.png"), "--instruction",
                       "add left pleural effusion", "--out", str(out), "--no-rse", "--steps", "2", "--seed", "3"])
        assert rc == 0
        capsys.readouterr()
        outs.append(np.asarray(Image.open(out)))
    assert np.array_equal(outs[0], outs[1])
    assert outs[0].std() > 1.0  # not washed out
