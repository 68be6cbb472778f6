"""The `instructx2x edit` sub-command on a tiny offline model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from instructx2x import cli
from instructx2x.core.errors import InputError
from instructx2x.inference import edit
from helpers.tiny_pipeline import build_tiny_pipeline

SIZE = 32


def _parser():
    parser = argparse.ArgumentParser()
    edit.add_parser(parser.add_subparsers(dest="command"))
    return parser


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    model = build_tiny_pipeline(root / "model")
    rng = np.random.default_rng(1)
    img = (rng.random((SIZE, SIZE)) * 255).astype(np.uint8)
    Image.fromarray(img).save(root / "in.png")
    user = np.zeros((SIZE, SIZE), np.uint8)
    user[:, 16:] = 255
    Image.fromarray(user).save(root / "user.png")
    return root, model, img


def test_edit_registered_in_cli():
    assert cli.SUBCOMMANDS["edit"] == "instructx2x.inference.edit"


def test_edit_with_user_mask_writes_outputs(files, capsys):
    root, model, img = files
    args = _parser().parse_args(["edit", "--model", str(model), "--image", str(root / "in.png"), "--instruction",
                                 "add left pleural effusion", "--out", str(root / "out"), "--user-mask",
                                 str(root / "user.png"), "--steps", "2", "--seed", "5"])
    assert args.func(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["mask_source"] == "user" and record["mode"] == "rse" and record["settings"]["seed"] == 5
    edited = np.asarray(Image.open(record["paths"]["edited"]))
    assert np.array_equal(edited[:, :16], img[:, :16])
    for key in ("guidance", "mask", "overlay", "difference", "guidance_npy"):
        assert (root / "out" / record["paths"][key].split("/")[-1]).exists()
    assert json.loads((root / "out" / "record.json").read_text())["settings"]["steps"] == 2


def test_edit_png_out_wo_rse_and_missing_masks_error(files, capsys):
    root, model, img = files
    args = _parser().parse_args(["edit", "--model", str(model), "--image", str(root / "in.png"), "--instruction",
                                 "add edema", "--out", str(root / "e.png"), "--mask-out", str(root / "m.png"),
                                 "--no-rse", "--steps", "2"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "wo_rse"
    assert (np.asarray(Image.open(root / "m.png")) == 255).all()
    args = _parser().parse_args(["edit", "--model", str(model), "--image", str(root / "in.png"), "--instruction",
                                 "add edema", "--out", str(root / "x.png"), "--masks", str(root / "none.npz")])
    with pytest.raises(InputError, match="pseudo masks"):
        args.func(args)


def test_edit_parses_instruction_and_restricts_to_named_side(files, capsys):
    from instructx2x.masks import CATEGORIES

    root, model, img = files
    masks = {c: np.zeros((SIZE, SIZE), np.uint8) for c in CATEGORIES}
    masks["Pleural Effusion"][16:30, 2:30] = 1  # symmetric
    np.savez(root / "pm.npz", resolution=np.int64(SIZE), **masks)
    args = _parser().parse_args(["edit", "--model", str(model), "--image", str(root / "in.png"), "--instruction",
                                 "Add a moderate left pleural effusion", "--out", str(root / "p.png"), "--masks",
                                 str(root / "pm.npz"), "--tau", "0", "--steps", "2"])
    assert args.func(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["mask_source"] == "pseudo" and record["categories"] == ["Pleural Effusion"]
    edited = np.asarray(Image.open(root / "p.png"))
    assert np.array_equal(edited[:, : SIZE // 2], img[:, : SIZE // 2])
    assert not np.array_equal(edited[16:30, SIZE // 2 : 30], img[16:30, SIZE // 2 : 30])
