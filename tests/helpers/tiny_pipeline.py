"""A tiny, randomly initialised InstructPix2Pix pipeline directory, built offline.

Real diffusers/transformers components (UNet with 8 input channels, AutoencoderKL, CLIP text
encoder, a CLIPTokenizer whose vocab.json/merges.txt are written here, the 1000-step DDPM
schedule of method §8), saved with ``StableDiffusionInstructPix2PixPipeline.save_pretrained`` so
the directory has exactly the layout the training stage exports. Used by tests and benchmarks of
the editor; nothing is downloaded.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def write_clip_tokenizer_files(directory, words=()) -> Path:
    """vocab.json + merges.txt of a character-level CLIP BPE (plus whole ``words``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ".,'-")
    vocab = {}
    for tok in ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges = ["#version: 0.2"]
    for w in words:
        w = w.lower()
        # merge the word left to right: w[0]+w[1], (w[0]w[1])+w[2], ... ending with </w>
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        acc = pieces[0]
        for piece in pieces[1:]:
            merges.append(f"{acc} {piece}")
            acc = acc + piece
            vocab.setdefault(acc, len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("\n".join(merges) + "\n")
    return directory


def build_tiny_pipeline(out_dir, seed: int = 0, words=("add", "remove", "left", "right", "pleural", "effusion")) -> Path:
    """Save a tiny random InstructPix2Pix pipeline to ``out_dir`` and return it."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    import tempfile

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = write_clip_tokenizer_files(tmp, words)
        tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
            num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=77,
            layer_norm_eps=1e-5,
        )
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    return out_dir
