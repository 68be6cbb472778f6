"""Training stage: fast_dev_run, resume equivalence, export -> from_pretrained -> edit, laterality
of the augmentation, latent cache. Small real inputs (32 px PNG pairs, tiny components)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from instructx2x.training.data import augment, load_image, read_instructions
from instructx2x.training.latents import LatentCache, cache_latents
from instructx2x.training.prepare import prepare
from instructx2x.training.train import train
from training_fixtures import make_pairs, tiny_config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = tiny_config()
    pq = make_pairs(tmp, n=12, size=32)
    info = prepare(pq, tmp / "init", cfg["model"], 0, 32)
    cache_latents(pq, tmp / "init", tmp / "lat", ["train", "val"], 2, 32, 0, cfg["training"]["augment"],
                  shard_pairs=5, batch=6, num_workers=0)
    return tmp, cfg, pq, info


def test_prepare_pretrains_the_tiny_vae_and_sets_its_scale(prepared):
    tmp, cfg, pq, info = prepared
    assert info["vae_last_loss"] < info["vae_first_loss"]
    # the report of the VAE's reconstruction on the val images, in grey levels, beside the model
    report = json.loads((tmp / "init" / "prepare_report.json").read_text())
    assert report["vae_val_images"] > 0 and 0 < report["vae_val_mae_grey"] < 255
    vae_cfg = json.loads((tmp / "init" / "vae" / "config.json").read_text())
    assert vae_cfg["scaling_factor"] == pytest.approx(info["scaling_factor"]) and vae_cfg["scaling_factor"] != 1.0
    assert json.loads((tmp / "init" / "unet" / "config.json").read_text())["in_channels"] == 8


def test_fast_dev_run(prepared, tmp_path):
    tmp, cfg, _, _ = prepared
    info = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "m", cfg["training"], 0, fast_dev_run=True)
    assert info["optimizer_steps"] == 1


def _unet_state(pipeline_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet").state_dict()


def test_resume_equals_uninterrupted_run(prepared, tmp_path):
    tmp, cfg, _, _ = prepared
    # 10 train pairs x 2 copies = 20 latents, batch 10: 2 steps per epoch; interrupt at step 2
    tcfg = dict(cfg["training"], batch_size=10, steps=4, checkpoint_every=2)
    full = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "full", tcfg, 0)
    part = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "res", tcfg, 0, max_steps=2)
    assert part["optimizer_steps"] == 2 and (tmp_path / "res" / "checkpoints" / "last.ckpt").exists()
    resumed = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "res", tcfg, 0)
    assert resumed["resumed"] and resumed["optimizer_steps"] == full["optimizer_steps"] == 4
    a, b = _unet_state(tmp_path / "full" / "pipeline"), _unet_state(tmp_path / "res" / "pipeline")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    init = _unet_state(tmp / "init")  # the exported EMA moved away from the initial weights
    assert any(not torch.equal(a[k], init[k]) for k in a)
    m = pd.read_csv(tmp_path / "res" / "metrics.csv")
    assert {"train_loss", "effective_batch_size", "optimizer_steps"} <= set(m.columns)
    assert m["step"].tolist() == [0, 1, 2, 3] and (m["effective_batch_size"] == 10).all()
    ckpts = sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("step*.ckpt"))
    assert len(ckpts) <= tcfg["keep_checkpoints"]
    assert (tmp_path / "full" / "loss_curve.png").stat().st_size > 0


def test_resume_from_a_mid_epoch_checkpoint_equals_uninterrupted_run(prepared, tmp_path):
    """2 steps per epoch, checkpoint every step, interrupted after step 3 (the middle of epoch 1):
    the resumed run trains on the rest of that epoch's permutation, not on a restarted epoch."""
    tmp, cfg, _, _ = prepared
    tcfg = dict(cfg["training"], batch_size=10, steps=6, checkpoint_every=1, keep_checkpoints=2)
    full = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "full", tcfg, 0)
    part = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "res", tcfg, 0, max_steps=3)
    assert part["optimizer_steps"] == 3
    state = torch.load(tmp_path / "res" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3 and state["epoch"] == 1  # mid-epoch: one of epoch 1's two batches done
    resumed = train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "res", tcfg, 0)
    assert resumed["resumed"] and resumed["optimizer_steps"] == full["optimizer_steps"] == 6
    a, b = _unet_state(tmp_path / "full" / "pipeline"), _unet_state(tmp_path / "res" / "pipeline")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    m_full, m_res = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(tmp_path / "res" / "metrics.csv")
    assert m_res["step"].tolist() == list(range(6))
    np.testing.assert_allclose(m_res["train_loss"], m_full["train_loss"], rtol=1e-5)


def test_export_loads_in_diffusers_and_edits(prepared, tmp_path):
    from diffusers import StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    tmp, cfg, pq, _ = prepared
    train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "m", dict(cfg["training"], steps=1), 0)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path / "m" / "pipeline", local_files_only=True)
    names = {p.name for p in (tmp_path / "m" / "pipeline").iterdir()}
    assert {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= names
    assert any((tmp_path / "m" / "pipeline" / "unet").glob("*.safetensors"))
    img = Image.open(pd.read_parquet(pq)["past_image"][0]).convert("RGB")
    out = pipe("add left pleural effusion", image=img, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_flip_always_swaps_laterality_in_the_instruction():
    rng = np.random.default_rng(0)
    x = torch.linspace(-1, 1, 16).repeat(3, 16, 1)  # increases left -> right on the image
    p, c, text, flip = augment(x, x.clone(), "add left pleural effusion and remove right edema", rng,
                               rotation_deg=0, crop_scale=1.0, flip_p=1.0)
    assert flip and text == "add right pleural effusion and remove left edema"
    torch.testing.assert_close(p, torch.flip(x, dims=[2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(c, p)
    p, _, text, flip = augment(x, x, "add left pleural effusion", rng, rotation_deg=0, crop_scale=1.0, flip_p=0.0)
    assert not flip and text == "add left pleural effusion"
    torch.testing.assert_close(p, x, atol=1e-5, rtol=0)
    for _ in range(20):  # random transforms: a flip iff the side words were swapped
        _, _, text, flip = augment(x, x, "add left pleural effusion", rng)
        assert (text == "add right pleural effusion") == flip


def test_latent_cache_stores_flipped_copies_with_swapped_text(prepared):
    tmp, *_ = prepared
    cache = LatentCache(tmp / "lat" / "index.json")
    rows = pd.DataFrame(cache.rows)
    assert len(rows) == 24 and (rows.loc[rows["copy"] == 0, "flip"] == False).all()  # noqa: E712
    for r in rows.itertuples():
        side = "left" if int(r.pair_id.split("_")[1]) % 2 == 0 else "right"
        other = {"left": "right", "right": "left"}[side]
        assert r.instruction == f"add {other if r.flip else side} pleural effusion"
    x = torch.stack([cache.latents(i) for i in range(len(cache))])
    assert x.shape == (24, 3, 4, 4, 4) and torch.isfinite(x).all() and (x[:, 1] > 0).all()  # mean, std > 0, cond


def test_malformed_table_fails_naming_the_column(tmp_path):
    pd.DataFrame({"pair_id": ["a"], "split": ["train"], "past_image": ["x.png"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"t.parquet: missing column\(s\) \['current_image', 'instruction'\]"):
        read_instructions(tmp_path / "t.parquet", ["train"])


def test_grayscale_replicated_to_three_channels(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", 8)
    assert x.shape == (3, 8, 8) and torch.equal(x[0], x[2]) and x.min() >= -1 and x.max() <= 1


def test_train_cli_end_to_end(tmp_path):
    import yaml

    from instructx2x.cli import main

    cfg = tiny_config(steps=2)
    cfg["registration"]["resolution"] = 32
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    pq = make_pairs(tmp_path, n=6, size=32)
    assert main(["train", "--instructions", pq, "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.yaml")]) == 0
    assert (tmp_path / "o" / "pipeline" / "model_index.json").exists()
    assert len(pd.read_csv(tmp_path / "o" / "metrics.csv")) == 2


def test_prediction_base_image_is_exported_and_starts_from_the_input(prepared, tmp_path):
    """training.prediction_base image: the output layer starts at zero (an untrained editor keeps its
    input), the exported pipeline says so in editor_config.json and our pipeline reads it."""
    from instructx2x.inference.rse import RegionSpecificEditPipeline

    tmp, cfg, pq, _ = prepared
    settings = dict(cfg["training"], steps=1, prediction_type="sample", prediction_base="image", lr=1e-8)
    train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "m", settings, 0)
    model = tmp_path / "m" / "pipeline"
    assert json.loads((model / "editor_config.json").read_text()) == {"prediction_base": "image"}
    pipe = RegionSpecificEditPipeline.from_pretrained(model)
    assert pipe.prediction_base == "image" and pipe.scheduler.config.prediction_type == "sample"
    img = np.asarray(load_image(pd.read_parquet(pq)["past_image"][0], 32)[0].add(1).mul(127.5).round().byte())
    out = pipe(img, "add left pleural effusion", rse=False, steps=3, image_guidance_scale=1.0, decode="residual")
    assert np.abs(out.edited.astype(int) - img).max() <= 1  # one step at lr 1e-8 from zero: the input
    # without the base the same zero output layer would predict an all-zero latent: far from the input
    none = RegionSpecificEditPipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler)
    far = none(img, "add left pleural effusion", rse=False, steps=3, image_guidance_scale=1.0, decode="residual")
    assert np.abs(far.edited.astype(int) - img).mean() > 3


def test_timestep_spacing_is_exported_and_used_by_the_editor(prepared, tmp_path):
    """training.timestep_spacing trailing: the exported scheduler config says so, so the editor's DDIM
    sampler (and diffusers' own pipeline) starts at t = 999; the default stays SD's leading."""
    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline

    from instructx2x.inference.rse import RegionSpecificEditPipeline

    tmp, cfg, _, _ = prepared
    settings = dict(cfg["training"], steps=1, prediction_type="sample", prediction_base="image", lr=1e-8,
                    timestep_spacing="trailing")
    train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "m", settings, 0)
    model = tmp_path / "m" / "pipeline"
    assert json.loads((model / "scheduler" / "scheduler_config.json").read_text())["timestep_spacing"] == "trailing"
    pipe = RegionSpecificEditPipeline.from_pretrained(model)
    pipe.scheduler.set_timesteps(5)
    assert pipe.scheduler.timesteps.tolist() == [999, 799, 599, 399, 199]
    theirs = StableDiffusionInstructPix2PixPipeline.from_pretrained(model, safety_checker=None, local_files_only=True)
    ddim = DDIMScheduler.from_config(theirs.scheduler.config)
    ddim.set_timesteps(5)
    assert ddim.timesteps.tolist()[0] == 999
    default = dict(settings)
    default.pop("timestep_spacing")
    train(tmp / "init", tmp / "lat" / "index.json", tmp_path / "d", default, 0)
    pipe = RegionSpecificEditPipeline.from_pretrained(tmp_path / "d" / "pipeline")
    pipe.scheduler.set_timesteps(5)
    assert pipe.scheduler.timesteps.tolist() == [800, 600, 400, 200, 0]
