"""The RSE editor on a tiny real diffusers pipeline built offline (method §9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructx2x.masks import CATEGORIES, PseudoMasks
from instructx2x.inference.rse import (
    RegionSpecificEditPipeline,
    noise_to_timestep,
    normalize_relevance,
    timestep_after_step,
)
from helpers.tiny_pipeline import build_tiny_pipeline

SIZE = 32
STEPS = 4
LEFT_EFFUSION = [{"op": "add", "finding": "pleural effusion", "location": "left"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_pipeline"))


def _symmetric_masks() -> PseudoMasks:
    masks = {c: np.zeros((SIZE, SIZE), np.uint8) for c in CATEGORIES}
    masks["Pleural Effusion"][16:30, 2:30] = 1  # both lower zones, symmetric about the midline
    masks["Cardiomegaly"][12:26, 10:22] = 1
    return PseudoMasks(masks=masks, resolution=SIZE)


@pytest.fixture(scope="module")
def pipe(model_dir):
    torch.set_num_threads(1)
    return RegionSpecificEditPipeline.from_pretrained(model_dir, pseudo_masks=_symmetric_masks())


@pytest.fixture(scope="module")
def image():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return ((np.sin(xx / 3.0) + np.cos(yy / 5.0) + 2) * 60).astype(np.uint8)


def test_pixels_outside_binary_mask_equal_input(pipe, image):
    out = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, seed=3)
    assert out.mode == "rse" and out.mask_source == "pseudo"
    assert out.mask.any() and not out.mask.all()
    assert out.edited.dtype == np.uint8
    assert np.array_equal(out.edited[~out.mask], image[~out.mask])
    assert not np.array_equal(out.edited[out.mask], image[out.mask])  # the edit did something inside


def test_guidance_zero_outside_pseudo_mask(pipe, image):
    ops = [{"op": "add", "finding": "cardiomegaly", "location": None}]
    out = pipe(image, "add cardiomegaly", operations=ops, steps=STEPS, seed=0)
    pseudo = _symmetric_masks().masks["Cardiomegaly"] > 0
    assert out.guidance.dtype == np.float32
    assert np.all(out.guidance[~pseudo] == 0)
    assert out.guidance[pseudo].max() > 0
    assert not out.mask[~pseudo].any()
    assert out.overlay.shape == (SIZE, SIZE, 3)


def test_same_seed_same_output_and_other_seed_differs(pipe, image):
    a = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, seed=11)
    b = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, seed=11)
    c = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, seed=12)
    assert np.array_equal(a.edited, b.edited) and np.array_equal(a.guidance, b.guidance)
    assert not np.array_equal(a.edited, c.edited)


def test_constant_relevance_map_no_nan(pipe, image):
    r, constant = normalize_relevance(torch.full((4, 4), 3.0))
    assert constant and torch.isfinite(r).all()
    r, constant = normalize_relevance(torch.tensor([[0.0, 1.0], [2.0, 100.0]]))
    assert not constant and float(r.min()) == 0.0 and float(r.max()) == 1.0
    # The empty instruction makes eps(I, T) == eps(I, ∅): a real all-zero relevance map.
    out = pipe(image, "", operations=LEFT_EFFUSION, steps=STEPS)
    assert out.relevance_constant
    assert np.isfinite(out.guidance).all() and np.isfinite(out.relevance_latent).all()


def test_user_mask_replaces_pseudo_mask(pipe, image):
    user = np.zeros((SIZE, SIZE), bool)
    user[0:8, 0:8] = True  # far from every pseudo mask
    out = pipe(image, "add left pleural effusion", user_mask=user, operations=LEFT_EFFUSION, steps=STEPS)
    assert out.mask_source == "user"
    assert not out.mask[~user].any()
    assert np.array_equal(out.edited[~user], image[~user])


def test_left_instruction_never_changes_other_side_of_midline(pipe, image):
    # The patient's left is on the image's right in a PA view: the image's left half stays intact.
    out = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, tau=0.0)
    assert "left" in out.mask_detail
    assert np.array_equal(out.edited[:, : SIZE // 2], image[:, : SIZE // 2])
    assert not out.mask[:, : SIZE // 2].any() and out.mask[:, SIZE // 2 :].any()
    assert np.all(out.guidance[:, : SIZE // 2] == 0)


def test_unknown_finding_uses_full_image_and_says_so(pipe, image):
    ops = [{"op": "add", "finding": "hiatal hernia", "location": None}]
    out = pipe(image, "add hiatal hernia", operations=ops, steps=STEPS, tau=0.0)
    assert out.mask_source == "full_image" and out.fallback
    assert "unknown finding" in out.mask_detail and "hiatal hernia" in out.mask_detail
    assert out.mask.all()
    # free text the grammar cannot read: also the full image, reported
    out = pipe(image, "qwerty zxcv", steps=1, tau=0.0)
    assert out.mask_source == "full_image" and out.fallback and "not parsed" in out.mask_detail


def test_wo_rse_edits_globally_with_same_sampler(pipe, image):
    out = pipe(image, "add left pleural effusion", operations=LEFT_EFFUSION, steps=STEPS, rse=False)
    assert out.mode == "wo_rse" and out.mask.all() and np.all(out.guidance == 0)
    assert not np.array_equal(out.edited[:, : SIZE // 2], image[:, : SIZE // 2])


def test_unmasked_latents_renoised_to_the_timestep_now(pipe):
    sched = pipe.scheduler
    sched.set_timesteps(10)
    ts = [int(t) for t in sched.timesteps]
    for now, nxt in zip(ts[:-1], ts[1:]):
        assert timestep_after_step(sched, now) == nxt
    assert timestep_after_step(sched, ts[-1]) < 0
    # DDIM's own step from t with eps = the true noise lands exactly on z0 noised to the next level.
    z0, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    x_t = sched.add_noise(z0, noise, torch.tensor(ts[2]))
    stepped = sched.step(noise, ts[2], x_t, return_dict=False)[0]
    assert torch.allclose(stepped, noise_to_timestep(sched, z0, noise, ts[3]), atol=1e-5)


def test_loads_offline_without_scheduler_download(model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = RegionSpecificEditPipeline.from_pretrained(model_dir)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert pipe.scheduler.config.num_train_timesteps == 1000
    with pytest.raises(FileNotFoundError, match="unet"):
        RegionSpecificEditPipeline.from_pretrained(model_dir / "vae")


def _identity_editor(pipe) -> RegionSpecificEditPipeline:
    """The same components with a UNet whose output is zero and predictions based on the image's
    latent: with image guidance 1 every step predicts the input's latent (the edit keeps the input;
    the image-dropped branch predicts zeros, which image guidance > 1 extrapolates away from)."""
    import copy

    from diffusers import DDIMScheduler

    unet = copy.deepcopy(pipe.unet)
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type="sample")
    return RegionSpecificEditPipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, unet, scheduler,
                                      pseudo_masks=pipe.pseudo_masks, prediction_base="image")


def test_residual_decode_cancels_the_vae_error_of_a_kept_latent(pipe, image):
    ident = _identity_editor(pipe)
    kw = dict(steps=STEPS, seed=1, rse=False, image_guidance_scale=1.0)
    plain = ident(image, "add left pleural effusion", decode="plain", **kw)
    residual = ident(image, "add left pleural effusion", decode="residual", **kw)
    # plain decoding of the input's own latent is the VAE's reconstruction (a random VAE: far off)
    assert np.abs(plain.edited.astype(int) - image).mean() > 5
    # residual decoding: input + D(z) - D(z0) with z = z0 is the input itself
    assert np.abs(residual.edited.astype(int) - image).max() <= 1
    assert residual.info["decode"] == "residual" and plain.info["decode"] == "plain"


def test_residual_decode_keeps_the_edit(pipe, image):
    # a real edit (a random UNet changes the latents): the residual output differs from the input by
    # exactly the decoded change D(z_edit) - D(z0)
    plain = pipe(image, "add left pleural effusion", steps=STEPS, seed=2, rse=False, decode="plain")
    residual = pipe(image, "add left pleural effusion", steps=STEPS, seed=2, rse=False, decode="residual")
    recon = pipe.vae.decode(pipe.encode_image(image), return_dict=False)[0]
    recon = ((recon + 1) * 127.5).mean(dim=1)[0].numpy()
    expected = image + (plain.edited.astype(float) - recon)
    # where nothing was clipped (the plain output, the reconstruction and the sum inside 0..255)
    free = (plain.edited > 0) & (plain.edited < 255) & (recon > 0) & (recon < 255) & (expected > 0) & (expected < 255)
    assert free.mean() > 0.5
    # roundings of the two paths (and a random VAE's channels clipped one by one in plain decoding)
    assert np.mean(np.abs(residual.edited - expected)[free] <= 1.5) > 0.9
    assert np.abs(residual.edited.astype(int) - image).mean() > 1


def test_prediction_base_needs_a_sample_scheduler_and_decode_is_checked(pipe, image):
    with pytest.raises(ValueError, match="prediction_type 'sample'"):
        RegionSpecificEditPipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler,
                                   prediction_base="image")
    with pytest.raises(ValueError, match="decode must be one of"):
        pipe(image, "add left pleural effusion", steps=STEPS, rse=False, decode="sharp")
