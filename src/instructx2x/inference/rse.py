"""Region-Specific Editing (method §9): an InstructPix2Pix editor confined to a guidance map.

``RegionSpecificEditPipeline`` reads top to bottom like diffusers'
``StableDiffusionInstructPix2PixPipeline`` (same components, same three-branch guidance), with the
RSE steps inserted:

    0. choose the region (user mask | pseudo masks of the parsed instruction | full image, reported)
    1. encode the prompt (instruction and the empty text)
    2. encode the image deterministically (``latent_dist.mode()``)          -> z0
    3. relevance map at t_rel with one seeded noise draw (Eq. 1), IQR clip, min-max -> R
    4. guidance map G = M ⊙ R (latent resolution; bilinear to image resolution for display)
    5. binary edit mask m = 1(G >= tau)
    6. DDIM, three guidance branches in one UNet call; after every step the latents outside m are
       replaced by z0 noised to the timestep the latents are NOW at, with the same noise
    7. decode; pixel composite so that the 8-bit output equals the input outside the mask
    8. outputs: edited image, guidance map, binary mask, overlay, which masks were used

``rse=False`` is the wo-RSE ablation: the same model and sampler, no steps 3-5 and no masking in
6-7 (the edit is global). Nothing is ever downloaded: every component, the scheduler configuration
included, is read from the model directory (§11).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from instructx2x.masks import PseudoMasks, RegionChoice, choose_region, parse_operations
from instructx2x.model.build import PREDICTION_BASES, read_prediction_base

log = logging.getLogger(__name__)

DEFAULTS = {
    "steps": 100,
    "image_guidance_scale": 1.5,
    "guidance_scale": 7.5,
    "tau": 0.1,
    "t_rel": 800,
    "seed": 0,
    "decode": "plain",
}
DECODES = ("plain", "residual")


@dataclass
class EditOutput:
    edited: np.ndarray  # uint8 (H, W)
    guidance: np.ndarray  # float32 (H, W) in [0, 1], zero outside the region (zeros in wo-RSE)
    guidance_latent: np.ndarray  # float32 (h, w), the map used for masking
    relevance_latent: np.ndarray  # float32 (h, w), R before the region mask
    mask: np.ndarray  # bool (H, W): pixels the edit may change
    mask_latent: np.ndarray  # bool (h, w)
    overlay: np.ndarray  # uint8 (H, W, 3): guidance map in red over the input
    mode: str  # "rse" | "wo_rse"
    mask_source: str  # "user" | "pseudo" | "full_image" | "none" (wo-RSE)
    mask_detail: str
    categories: list = field(default_factory=list)
    fallback: bool = False
    relevance_constant: bool = False
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Pure helpers (tested on their own)
# ------------------------------------------------------------------------------------------------


def normalize_relevance(r: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, bool]:
    """IQR upper clip (Q3 + 1.5 IQR) then min-max to [0, 1]; a constant map gives ones, never NaN.

    Returns (normalised map, whether the map was constant). A constant map means no location is
    more relevant than another, so the whole region is kept (G = M) and the flag is reported.
    """
    r = r.float()
    q1, q3 = torch.quantile(r.flatten(), torch.tensor([0.25, 0.75], dtype=r.dtype))
    r = torch.minimum(r, q3 + 1.5 * (q3 - q1))
    lo, hi = r.min(), r.max()
    span = hi - lo
    if not torch.isfinite(span) or span <= eps:
        return torch.ones_like(r), True
    return (r - lo) / span, False


def timestep_after_step(scheduler, t: int) -> int:
    """The timestep DDIM's ``step`` from ``t`` lands on (negative: the final, clean level)."""
    return int(t) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps


def noise_to_timestep(scheduler, z0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
    """z0 noised to the level of timestep ``t`` with the alpha DDIM itself uses there."""
    alpha = scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod
    alpha = alpha.to(device=z0.device, dtype=z0.dtype)
    return alpha.sqrt() * z0 + (1 - alpha).sqrt() * noise


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded images in [-1, 1], (B, C, H, W) -> uint8 grayscale (B, H, W) (channel mean)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).mean(dim=1)
    return x.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def make_overlay(image: np.ndarray, guidance: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The guidance map in red over the grayscale input (uint8 RGB)."""
    gray = image.astype(np.float32)[..., None].repeat(3, axis=2)
    red = np.zeros_like(gray)
    red[..., 0] = 255.0
    a = (alpha * np.clip(guidance, 0, 1))[..., None]
    return np.round((1 - a) * gray + a * red).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


def _component_class(model_dir: Path, name: str, default):
    index = model_dir / "model_index.json"
    if index.exists():
        entry = json.loads(index.read_text()).get(name)
        if entry and entry[0] in ("diffusers", "transformers"):
            module = __import__(entry[0])
            cls = getattr(module, entry[1], None)
            if cls is not None:
                return cls
    return default


class RegionSpecificEditPipeline:
    """InstructPix2Pix components + Region-Specific Editing (see the module docstring)."""

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, pseudo_masks: PseudoMasks | None = None,
                 region_settings=None, prediction_base: str = "none"):
        from diffusers import DDIMScheduler

        self.vae, self.text_encoder, self.tokenizer, self.unet = vae, text_encoder, tokenizer, unet
        self.prediction_base = prediction_base
        if prediction_base not in PREDICTION_BASES:
            raise ValueError(f"prediction_base must be one of {PREDICTION_BASES}, got {prediction_base!r}")
        if prediction_base == "image" and scheduler.config.prediction_type != "sample":
            raise ValueError("prediction_base 'image' needs a scheduler with prediction_type 'sample'")
        # §9.5: DDIM, configured from the model's own (DDPM) schedule.
        self.scheduler = scheduler if isinstance(scheduler, DDIMScheduler) else DDIMScheduler.from_config(scheduler.config)
        self.pseudo_masks = pseudo_masks
        self.region_settings = region_settings or {}
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        for m in (self.vae, self.text_encoder, self.unet):
            m.eval().requires_grad_(False)

    @property
    def device(self):
        return self.unet.device

    @classmethod
    def from_pretrained(cls, model_dir, pseudo_masks=None, region_settings=None, device="cpu", dtype=torch.float32):
        """Load every component from a diffusers pipeline directory, offline."""
        import diffusers
        import transformers

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model_dir = Path(model_dir)
        for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if not (model_dir / sub).is_dir():
                raise FileNotFoundError(
                    f"{model_dir}/{sub} missing: the model directory must be a diffusers pipeline "
                    "(unet, vae, text_encoder, tokenizer, scheduler), e.g. results/model/pipeline"
                )
        kw = {"local_files_only": True}
        wkw = {**kw, "torch_dtype": dtype}
        unet = _component_class(model_dir, "unet", diffusers.UNet2DConditionModel).from_pretrained(model_dir / "unet", **wkw)
        vae = _component_class(model_dir, "vae", diffusers.AutoencoderKL).from_pretrained(model_dir / "vae", **wkw)
        text_encoder = _component_class(model_dir, "text_encoder", transformers.CLIPTextModel).from_pretrained(
            model_dir / "text_encoder", **wkw
        )
        tokenizer = _component_class(model_dir, "tokenizer", transformers.CLIPTokenizer).from_pretrained(
            model_dir / "tokenizer", **kw
        )
        sched_config = diffusers.DDIMScheduler.load_config(model_dir / "scheduler", **kw)
        scheduler = diffusers.DDIMScheduler.from_config(sched_config)
        if isinstance(pseudo_masks, (str, Path)):
            pseudo_masks = PseudoMasks.load(pseudo_masks)
        base = read_prediction_base(model_dir)  # editor_config.json, written by training (save_pipeline)
        pipe = cls(vae.to(device), text_encoder.to(device), tokenizer, unet.to(device), scheduler,
                   pseudo_masks=pseudo_masks, region_settings=region_settings, prediction_base=base)
        return pipe

    # -- building blocks, in the order __call__ uses them ---------------------------------------

    def check_inputs(self, image: np.ndarray, steps: int, tau: float, t_rel: int):
        if image.ndim != 2 or image.dtype != np.uint8:
            raise ValueError(f"image must be a 2-D uint8 grayscale array, got {image.dtype} {image.shape}")
        f = self.vae_scale_factor * self.unet_factor
        if image.shape[0] % f or image.shape[1] % f:
            raise ValueError(f"image size {image.shape} must be divisible by {f} (VAE x UNet downsampling)")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        if not 0 <= tau <= 1:
            raise ValueError("tau must be in [0, 1]")
        if not 0 <= t_rel < self.scheduler.config.num_train_timesteps:
            raise ValueError(f"t_rel must be in [0, {self.scheduler.config.num_train_timesteps})")

    @torch.no_grad()
    def encode_prompt(self, instruction: str) -> torch.Tensor:
        """[text, empty] embeddings, tokenised exactly as the diffusers pipeline does."""
        from instructx2x.model.tokenizer import check_length

        check_length(self.tokenizer, [instruction])  # an over-long instruction is refused, never cut
        tok = self.tokenizer([instruction, ""], padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        attn = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            attn = tok.attention_mask.to(self.device)
        return self.text_encoder(tok.input_ids.to(self.device), attention_mask=attn)[0]

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """Deterministic encoding: the mode of the latent distribution (unscaled, as InstructPix2Pix)."""
        x = torch.from_numpy(image).float().div(127.5).sub(1.0)
        x = x[None, None].repeat(1, 3, 1, 1).to(self.device, self.unet.dtype)
        return self.vae.encode(x).latent_dist.mode()

    def unet_eps(self, latents, t, image_latents, embeds):
        latents = self.scheduler.scale_model_input(latents, t)
        return self.unet(torch.cat([latents, image_latents], dim=1), t, encoder_hidden_states=embeds, return_dict=False)[0]

    @torch.no_grad()
    def relevance_map(self, z0, image_latents, embeds, t_rel, noise) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Eq. 1: R = sum_c |eps(I, T) - eps(I, ∅)| at t_rel, both branches in one UNet call."""
        t = torch.tensor(int(t_rel), device=z0.device)
        noisy = self.scheduler.add_noise(z0, noise, t)
        eps = self.unet(torch.cat([noisy.repeat(2, 1, 1, 1), image_latents.repeat(2, 1, 1, 1)], dim=1), t,
                        encoder_hidden_states=embeds, return_dict=False)[0]
        raw = (eps[0] - eps[1]).abs().sum(dim=0)  # a prediction base (same image in both) cancels
        r, constant = normalize_relevance(raw)
        return r, raw, constant

    def latent_region(self, region: np.ndarray, latent_hw) -> torch.Tensor:
        """The region at latent resolution: a latent cell is inside if any of its pixels is."""
        m = torch.from_numpy(region.astype(np.float32))[None, None]
        return F.adaptive_max_pool2d(m, latent_hw)[0, 0].to(self.device)

    @torch.no_grad()
    def __call__(
        self,
        image: np.ndarray,
        instruction: str,
        user_mask: np.ndarray | None = None,
        operations: list | None = None,
        seed: int = DEFAULTS["seed"],
        steps: int = DEFAULTS["steps"],
        image_guidance_scale: float = DEFAULTS["image_guidance_scale"],
        guidance_scale: float = DEFAULTS["guidance_scale"],
        tau: float = DEFAULTS["tau"],
        t_rel: int = DEFAULTS["t_rel"],
        rse: bool = True,
        decode: str = DEFAULTS["decode"],
        callback=None,
    ) -> EditOutput:
        """Edit ``image``; ``callback(done, total)``, if given, is called after every DDIM step."""
        image = np.asarray(image)
        self.check_inputs(image, steps, tau, t_rel)
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        H, W = image.shape
        generator = torch.Generator(device="cpu").manual_seed(int(seed))

        # 0. Region: user mask, else the pseudo masks of the parsed instruction, else full image.
        if rse:
            unparsed = None
            if user_mask is None and self.pseudo_masks is not None and operations is None:
                try:
                    operations = parse_operations(instruction)
                except ValueError as err:  # the grammar cannot read it: global edit, reported
                    unparsed = f"fallback to full image: instruction not parsed ({err})"
            if unparsed:
                region = RegionChoice(np.ones((H, W), bool), "full_image", unparsed, fallback=True)
            else:
                region = choose_region(operations or [], (H, W), self.pseudo_masks, user_mask, self.region_settings)
        else:
            region = RegionChoice(np.ones((H, W), bool), "none", "wo-RSE: global edit, no region")

        # 1. Prompt embeddings: [instruction, empty].
        text_emb, empty_emb = self.encode_prompt(instruction).chunk(2)

        # 2. Deterministic image latents; z0 lives in the (scaled) denoising space.
        image_latents = self.encode_image(image)
        z0 = image_latents * self.vae.config.scaling_factor
        shape = z0.shape

        # Seeded noise: one draw for the relevance map, one for sampling (also re-noises z0).
        rel_noise = torch.randn(shape, generator=generator).to(self.device, z0.dtype)
        noise = torch.randn(shape, generator=generator).to(self.device, z0.dtype)

        # 3-5. Relevance map, guidance map G = M ⊙ R, binary mask m = 1(G >= tau).
        hw = tuple(shape[-2:])
        if rse:
            r, r_raw, constant = self.relevance_map(z0, image_latents, torch.cat([text_emb, empty_emb]), t_rel, rel_noise)
            g = self.latent_region(region.mask, hw) * r
            m_lat = g >= tau
        else:
            r = torch.zeros(hw, device=self.device)
            g, constant = r, False
            m_lat = torch.ones(hw, dtype=torch.bool, device=self.device)
        keep = (~m_lat).to(z0.dtype)[None, None]  # latents to hold at the input's

        # 6. DDIM with the three guidance branches in one UNet call.
        self.scheduler.set_timesteps(int(steps), device=self.device)
        latents = noise * self.scheduler.init_noise_sigma
        embeds = torch.cat([text_emb, empty_emb, empty_emb])
        cond = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
        n_steps = len(self.scheduler.timesteps)
        for i, t in enumerate(self.scheduler.timesteps):
            eps_text, eps_image, eps_uncond = self.unet_eps(latents.repeat(3, 1, 1, 1), t, cond, embeds).chunk(3)
            if self.prediction_base == "image":  # the UNet predicts the change from the image's latent
                eps_text, eps_image = eps_text + z0, eps_image + z0
            eps = eps_uncond + guidance_scale * (eps_text - eps_image) + image_guidance_scale * (eps_image - eps_uncond)
            latents = self.scheduler.step(eps, t, latents, return_dict=False)[0]
            if rse:
                # Re-noise the input to the level the latents are at NOW (after this step).
                z_now = noise_to_timestep(self.scheduler, z0, noise, timestep_after_step(self.scheduler, int(t)))
                latents = keep * z_now + (1 - keep) * latents
            if callback is not None:
                callback(i + 1, n_steps)

        # 7. Decode; pixel composite so that outside the mask the output is the input, exactly.
        #    residual: input + D(z_edit) - D(z0), the VAE's own reconstruction error cancels where
        #    the edit keeps the input's latents (docs/rse.md).
        decoded_t = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        if decode == "residual":
            recon = self.vae.decode(image_latents, return_dict=False)[0]
            x_in = torch.from_numpy(image).float().div(127.5).sub(1.0).to(decoded_t)
            delta = (decoded_t - recon).float().mean(dim=1)[0]  # the grey image is the channel mean
            decoded_t = (x_in + delta)[None, None].repeat(1, decoded_t.shape[1], 1, 1)
        decoded = to_uint8(decoded_t)[0]
        if rse:
            up = F.interpolate(m_lat[None, None].float(), size=(H, W), mode="nearest")[0, 0].cpu().numpy() > 0.5
            pix_mask = up & region.mask
            edited = np.where(pix_mask, decoded, image).astype(np.uint8)
            g_img = F.interpolate(g[None, None].float(), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
            guidance = (g_img.cpu().numpy() * region.mask).astype(np.float32)
        else:
            pix_mask = np.ones((H, W), bool)
            edited = decoded
            guidance = np.zeros((H, W), np.float32)

        # 8. Outputs.
        if region.fallback:
            log.warning("RSE region: %s", region.detail)
        return EditOutput(
            edited=edited,
            guidance=guidance,
            guidance_latent=g.float().cpu().numpy(),
            relevance_latent=r.float().cpu().numpy(),
            mask=pix_mask,
            mask_latent=m_lat.cpu().numpy(),
            overlay=make_overlay(image, guidance),
            mode="rse" if rse else "wo_rse",
            mask_source=region.source,
            mask_detail=region.detail,
            categories=list(region.categories),
            fallback=region.fallback,
            relevance_constant=bool(constant),
            info={"seed": int(seed), "steps": int(steps), "tau": float(tau), "t_rel": int(t_rel),
                  "image_guidance_scale": float(image_guidance_scale), "guidance_scale": float(guidance_scale),
                  "decode": decode, "edited_fraction": float(pix_mask.mean())},
        )


def save_edit(out: EditOutput, outdir, stem: str = "") -> dict:
    """Write the edited image, guidance map (16-bit PNG + .npy float), mask, overlay and a JSON record."""
    from PIL import Image

    from instructx2x.core.io import atomic_path, write_json

    outdir = Path(outdir)
    p = stem + ("_" if stem else "")
    paths = {
        "edited_path": outdir / f"{p}edited.png",
        "guidance_path": outdir / f"{p}guidance.npy",
        "guidance_png_path": outdir / f"{p}guidance.png",
        "mask_path": outdir / f"{p}mask.png",
        "overlay_path": outdir / f"{p}overlay.png",
    }
    images = {
        "edited_path": Image.fromarray(out.edited),
        "guidance_png_path": Image.fromarray(np.round(out.guidance * 255).astype(np.uint8)),
        "mask_path": Image.fromarray(out.mask.astype(np.uint8) * 255),
        "overlay_path": Image.fromarray(out.overlay, mode="RGB"),
    }
    for key, im in images.items():
        with atomic_path(paths[key]) as tmp:
            im.save(tmp, format="PNG")
    with atomic_path(paths["guidance_path"]) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, out.guidance)
    record = {k: str(v) for k, v in paths.items()}
    record.update(mode=out.mode, mask_source=out.mask_source, mask_detail=out.mask_detail, fallback=out.fallback,
                  categories=out.categories, relevance_constant=out.relevance_constant, **out.info)
    write_json(record, outdir / f"{p}record.json")
    return record
