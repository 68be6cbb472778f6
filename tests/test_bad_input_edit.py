"""Bad input to `instructx2x edit` and `instructx2x serve`: one line `error: ...` on stderr, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers.tiny_pipeline import build_tiny_pipeline
from instructx2x.cli import main

SIZE = 32  # the tiny pipeline's factor is 4 (VAE 2 x UNet 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_edit")
    model = build_tiny_pipeline(root / "model")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((SIZE, SIZE)) * 255).astype(np.uint8)).save(root / "in.png")
    Image.fromarray((rng.random((30, 30)) * 255).astype(np.uint8)).save(root / "odd.png")
    (root / "notes.png").write_text("not an image\n")
    wide = np.zeros((SIZE, 2 * SIZE), np.uint8)
    wide[:, :8] = 255
    Image.fromarray(wide).save(root / "wide_mask.png")
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(root / "empty_mask.png")
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "unet").mkdir()
    return root, model


def _edit(root, model, *extra, image="in.png"):
    return ["edit", "--model", str(model), "--image", str(root / image), "--instruction",
            "Add a moderate left pleural effusion", "--out", str(root / "out"), "--steps", "2", "--no-rse", *extra]


def _fails(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


def test_missing_image(files, capsys):
    root, model = files
    _fails(_edit(root, model, image="nope.png"), capsys, "nope.png: no such file")


def test_not_an_image(files, capsys):
    root, model = files
    _fails(_edit(root, model, image="notes.png"), capsys, "notes.png: cannot decode image (not an image file")


@pytest.mark.parametrize("model_arg,fragment", [("", "--model is empty"), ("missing_dir", "no such directory"),
                                                ("not_a_model", "missing vae, text_encoder, tokenizer, scheduler")])
def test_bad_model(files, capsys, model_arg, fragment):
    root, _ = files
    model = root / model_arg if model_arg else ""
    _fails(_edit(root, model), capsys, fragment)


def test_size_not_divisible(files, capsys):
    root, model = files
    _fails(_edit(root, model, image="odd.png"), capsys, "30x30 pixels; the model needs both sides divisible by 4")


def test_user_mask_with_other_aspect_ratio(files, capsys):
    root, model = files
    argv = [a for a in _edit(root, model, "--user-mask", str(root / "wide_mask.png")) if a != "--no-rse"]
    _fails(argv, capsys, "wide_mask.png: 64x32 pixels has another aspect ratio than the image (32x32)")


def test_empty_user_mask(files, capsys):
    root, model = files
    argv = [a for a in _edit(root, model, "--user-mask", str(root / "empty_mask.png")) if a != "--no-rse"]
    _fails(argv, capsys, "empty_mask.png is empty", "output would equal the input")


@pytest.mark.parametrize("extra,fragment", [(("--steps", "0"), "steps 0 out of range"),
                                            (("--tau", "1.5"), "tau 1.5 out of range"),
                                            (("--seed", "-1"), "seed -1 out of range")])
def test_bad_settings(files, capsys, extra, fragment):
    root, model = files
    _fails(_edit(root, model, *extra), capsys, fragment)


def test_empty_instruction(files, capsys):
    root, model = files
    argv = _edit(root, model)
    argv[argv.index("--instruction") + 1] = "  "
    _fails(argv, capsys, "instruction is empty")


def test_missing_pseudo_masks_for_rse(files, capsys):
    root, model = files
    argv = [a for a in _edit(root, model, "--masks", str(root / "none.npz")) if a != "--no-rse"]
    _fails(argv, capsys, "none.npz not found")


def test_debug_shows_the_traceback(files):
    root, model = files
    with pytest.raises(Exception, match="no such file"):
        main(_edit(root, model, "--debug", image="nope.png"))


def test_serve_bad_model_and_port(files, capsys):
    root, model = files
    _fails(["serve", "--model", ""], capsys, "--model is empty")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        _fails(["serve", "--model", str(model), "--masks", "none", "--gallery", "", "--port", str(port)], capsys,
               f"cannot listen on 127.0.0.1:{port}")
