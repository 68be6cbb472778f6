"""Model building: tokenizer offline, tiny preset, and a local pretrained-format directory
(a 4-channel SD-style UNet expanded to 8 input channels with zero-initialised extra weights)."""

from __future__ import annotations

import pytest
import torch

from instructx2x.model.build import build_tiny, expand_unet_input, load_pretrained, save_pipeline
from instructx2x.model.tokenizer import build_tokenizer, instruction_words
from training_fixtures import tiny_config


def test_tokenizer_whole_words_and_any_text(tmp_path):
    words = instruction_words(["add left pleural effusion", "remove right edema"])
    tok = build_tokenizer(words, 16, tmp_path)
    ids = tok("add left pleural effusion").input_ids
    assert len(ids) == 6 and tok.decode(ids[1:-1]) == "add left pleural effusion"
    assert len(tok("pneumothorax").input_ids) > 3  # unseen word: characters, never unknown


def test_pretrained_directory_offline_expands_unet(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config()["model"]["tiny"]
    c = build_tiny(dict(cfg, sample_size=32), ["add", "left", "edema"], tmp_path / "tok", seed=0)
    # an SD-style (text-to-image) UNet: 4 input channels
    from diffusers import UNet2DConditionModel

    sd_unet = UNet2DConditionModel.from_config({**dict(c.unet.config), "in_channels": 4})
    c.unet = sd_unet
    save_pipeline(c, tmp_path / "sd")
    loaded = load_pretrained(tmp_path / "sd")
    assert loaded.unet.config.in_channels == 8 and loaded.unet.conv_in.in_channels == 8
    w = loaded.unet.conv_in.weight
    assert torch.count_nonzero(w[:, 4:]) == 0
    torch.testing.assert_close(w[:, :4], sd_unet.conv_in.weight)
    x = torch.randn(1, 4, 4, 4)
    h = torch.randn(1, 16, cfg["text_hidden_size"])
    with torch.no_grad():
        a = sd_unet(x, 10, encoder_hidden_states=h).sample
        b = loaded.unet(torch.cat([x, torch.randn_like(x)], 1), 10, encoder_hidden_states=h).sample
    torch.testing.assert_close(a, b)  # the expanded UNet starts as the pretrained one
    assert loaded.scheduler.config.num_train_timesteps == 1000
    assert loaded.scheduler.config.beta_schedule == "scaled_linear"
    assert expand_unet_input(loaded.unet) is loaded.unet


def test_missing_pretrained_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pretrained(tmp_path)


def test_tokenizer_allows_77_tokens_and_never_cuts_silently(tmp_path):
    """The demo tokenizer's limit is CLIP's 77; the longest instruction the builder writes fits, and a
    longer one is refused with its token count (training and editing call check_length)."""
    from instructx2x.core.config import REPO_ROOT, load_config
    from instructx2x.instructions.grammar import render_instruction
    from instructx2x.instructions.operation import Operation
    from instructx2x.model.tokenizer import InstructionTooLong, check_length, token_counts

    limit = load_config(REPO_ROOT / "config.yaml")["model"]["tiny"]["max_length"]
    assert limit == 77
    five = render_instruction([
        Operation("change", "pleural effusion", "left lung base", from_level="mild to moderate", to_level="moderate to severe"),
        Operation("add", "enlargement of the cardiac silhouette", severity="moderate"),
        Operation("add", "atelectasis", "right middle to lower lung", "mild"),
        Operation("remove", "tortuosity of the descending aorta"),
        Operation("remove", "edema", "bilateral", "moderate to severe")])
    tok = build_tokenizer(instruction_words([five]), limit, tmp_path)
    assert 32 < token_counts(tok, [five])[0] <= limit  # the old 32-token limit cut such an instruction
    check_length(tok, [five])
    with pytest.raises(InstructionTooLong, match=r"1 instruction\(s\) longer than the text encoder's 77 tokens"):
        check_length(tok, [five + "; " + five])


def test_tiny_vae_latent_channels_and_narrow_initial_posterior(tmp_path):
    """The UNet takes [noisy, image] latents of the VAE's width; the posterior starts narrow (std ~0.02)."""
    cfg = dict(tiny_config()["model"]["tiny"], sample_size=32, vae_latent_channels=6)
    c = build_tiny(cfg, ["add", "edema"], tmp_path / "tok", seed=0)
    assert c.vae.config.latent_channels == 6
    assert c.unet.config.in_channels == 12 and c.unet.config.out_channels == 6
    with torch.no_grad():
        post = c.vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist
    assert float(post.std.max()) < 0.05
    unet_out = c.unet(torch.zeros(1, 12, 8, 8), 10, encoder_hidden_states=torch.zeros(1, 4, cfg["text_hidden_size"])).sample
    assert unet_out.shape == (1, 6, 8, 8)
