"""One edit of one image, the same for ``instructx2x edit`` and ``instructx2x serve``.

``Editor`` loads a model directory once (and the pseudo masks when given) and edits images with
``EditSettings``; ``EditResult.images()`` encodes the outputs as PNG bytes, which the CLI writes to
files and the server returns as base64, so both give the same bytes for the same inputs. Every
user-fixable problem (model directory, image size, user mask, settings) is an ``InputError`` with a
one-line message.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from instructx2x.core.errors import InputError
from instructx2x.inference.rse import DECODES, DEFAULTS

MODEL_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
MAX_STEPS = 1000
MAX_SEED = 2**32 - 1
# a user mask may differ from the image's aspect ratio by this much (rounding of a resized mask)
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class EditSettings:
    """Everything that decides an edit besides the image, the user mask and the model."""

    instruction: str
    seed: int = DEFAULTS["seed"]
    steps: int = DEFAULTS["steps"]
    tau: float = DEFAULTS["tau"]
    t_rel: int = DEFAULTS["t_rel"]
    image_guidance_scale: float = DEFAULTS["image_guidance_scale"]
    guidance_scale: float = DEFAULTS["guidance_scale"]
    rse: bool = True
    decode: str = DEFAULTS["decode"]

    def validate(self) -> "EditSettings":
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise InputError("instruction is empty: type what to change, e.g. 'Add a moderate left pleural effusion'")
        if len(self.instruction) > 500:
            raise InputError(f"instruction is {len(self.instruction)} characters long; at most 500 are accepted")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed {self.seed} out of range: 0 to {MAX_SEED}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps {self.steps} out of range: 1 to {MAX_STEPS}")
        if not 0.0 <= self.tau <= 1.0:
            raise InputError(f"tau {self.tau} out of range: 0 to 1")
        if not 0 <= self.t_rel <= 999:
            raise InputError(f"t_rel {self.t_rel} out of range: 0 to 999")
        if self.decode not in DECODES:
            raise InputError(f"decode {self.decode!r}: must be one of {', '.join(DECODES)}")
        for name in ("image_guidance_scale", "guidance_scale"):
            v = getattr(self, name)
            if not math.isfinite(v) or not 0.0 <= v <= 50.0:
                raise InputError(f"{name} {v} out of range: 0 to 50")
        return self

    @classmethod
    def from_json(cls, obj) -> "EditSettings":
        """Settings from a JSON object (the server's ``settings`` field); unknown keys and wrong types are errors."""
        if not isinstance(obj, dict):
            raise InputError("settings must be a JSON object, e.g. {\"instruction\": \"Add a small left pleural effusion\"}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(obj) - set(known))
        if unknown:
            raise InputError(f"settings: unknown key(s) {unknown}; known: {sorted(known)}")
        if "instruction" not in obj:
            raise InputError("settings: 'instruction' is required")
        values = {}
        for name, value in obj.items():
            kind = {"instruction": str, "decode": str, "seed": int, "steps": int, "t_rel": int, "rse": bool}.get(name, float)
            ok = (isinstance(value, bool) if kind is bool else
                  isinstance(value, int) and not isinstance(value, bool) if kind is int else
                  isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
                  isinstance(value, str))
            if not ok:
                raise InputError(f"settings: {name} must be {kind.__name__}, got {value!r}")
            values[name] = float(value) if kind is float else value
        return cls(**values).validate()

    def as_dict(self) -> dict:
        return asdict(self)


def check_model_dir(model_dir) -> Path:
    """The model directory, or an ``InputError`` saying what is missing."""
    if model_dir is None or not str(model_dir).strip():
        raise InputError("--model is empty: give the trained pipeline directory, e.g. results/model/pipeline")
    path = Path(model_dir)
    if not path.exists():
        raise InputError(f"--model {path}: no such directory (train the demo with `make demo`: results/model/pipeline)")
    if not path.is_dir():
        raise InputError(f"--model {path}: is a file; a diffusers pipeline directory is expected")
    missing = [p for p in MODEL_PARTS if not (path / p).is_dir()]
    if missing:
        raise InputError(f"--model {path}: not a diffusers pipeline, missing {', '.join(missing)}/ "
                         f"(expected {', '.join(MODEL_PARTS)}, e.g. results/model/pipeline)")
    return path


def model_sha256(model_dir) -> str:
    """SHA-256 over every file of the model directory (relative path and contents, sorted)."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_image_size(image: np.ndarray, factor: int, name: str = "image") -> None:
    h, w = image.shape
    if h % factor or w % factor:
        raise InputError(f"{name}: {w}x{h} pixels; the model needs both sides divisible by {factor} "
                         f"(resize or crop it, e.g. to {max(factor, w // factor * factor)}x{max(factor, h // factor * factor)})")


def user_mask_from_gray(mask: np.ndarray, image_shape, name: str = "user mask") -> np.ndarray:
    """A user mask (8-bit, > 127 = edit) checked against the image: same aspect ratio, not empty."""
    h, w = image_shape
    mh, mw = mask.shape
    if abs((mw / mh) / (w / h) - 1.0) > ASPECT_TOLERANCE:
        raise InputError(f"{name}: {mw}x{mh} pixels has another aspect ratio than the image ({w}x{h}); "
                         "draw or export the mask on the image itself")
    m = mask > 127
    if not m.any():
        raise InputError(f"{name} is empty (no pixel above 127): nothing would be edited and the output would "
                         "equal the input; mark the region to edit in white")
    return m


def png_bytes(arr: np.ndarray) -> bytes:
    """The one PNG encoder of the editor's outputs (CLI files and server responses)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode="RGB" if arr.ndim == 3 else "L").save(buf, format="PNG")
    return buf.getvalue()


def difference_map(image: np.ndarray, edited: np.ndarray) -> tuple[np.ndarray, int]:
    """Signed difference as RGB: red where the edit is brighter, blue where darker, scaled so the
    largest change is full intensity; returns (image, the largest absolute change in grey levels)."""
    d = edited.astype(np.int16) - image.astype(np.int16)
    peak = int(np.abs(d).max())
    rgb = np.zeros(image.shape + (3,), np.uint8)
    if peak:
        scale = 255.0 / peak
        rgb[..., 0] = np.round(np.clip(d, 0, None) * scale).astype(np.uint8)
        rgb[..., 2] = np.round(np.clip(-d, 0, None) * scale).astype(np.uint8)
    return rgb, peak


def preview_operations(instruction: str, pseudo_masks=None, region_settings=None, shape=(64, 64)) -> dict:
    """The parsed operations (op, finding, side, zone, severity) and the region the edit would use."""
    from instructx2x.masks import choose_region, finding_category, location_side_zone, parse_operations

    try:
        ops = parse_operations(instruction)
    except ValueError as err:
        return {"operations": [], "parsed": False, "warning": f"instruction not parsed ({err}): the whole image will be edited"}
    rows = []
    for op in ops:
        side, zone = location_side_zone(op.get("location"))
        rows.append({"op": op.get("op"), "finding": op.get("finding"), "category": finding_category(op.get("finding")),
                     "side": side, "zone": zone, "severity": op.get("severity") or op.get("to_level"),
                     "from_level": op.get("from_level")})
    warning = None
    unknown = [r["finding"] for r in rows if r["category"] is None]
    if unknown:
        warning = f"unknown finding {unknown[0]!r} (not one of the 8 MS-CXR categories): the whole image will be edited"
    elif pseudo_masks is not None:
        region = choose_region(ops, shape, pseudo_masks, None, region_settings)
        if region.fallback:
            warning = f"{region.detail}: the whole image will be edited"
    return {"operations": rows, "parsed": True, "warning": warning}


@dataclass
class EditResult:
    output: object  # rse.EditOutput
    record: dict
    difference: np.ndarray = field(repr=False, default=None)

    def images(self) -> dict[str, bytes]:
        """PNG bytes of every output image, by name."""
        out = self.output
        return {
            "edited": png_bytes(out.edited),
            "guidance": png_bytes(np.round(out.guidance * 255).astype(np.uint8)),
            "mask": png_bytes(out.mask.astype(np.uint8) * 255),
            "overlay": png_bytes(out.overlay),
            "difference": png_bytes(self.difference),
        }


class Editor:
    """A loaded model (+ pseudo masks) that edits images; one instance per CLI run or server."""

    def __init__(self, model_dir, pseudo_masks=None, region_settings=None, device="cpu"):
        from instructx2x.inference.rse import RegionSpecificEditPipeline
        from instructx2x.masks import PseudoMasks

        self.model_dir = check_model_dir(model_dir)
        if isinstance(pseudo_masks, (str, Path)):
            try:
                pseudo_masks = PseudoMasks.load(pseudo_masks)
            except FileNotFoundError as err:
                raise InputError(str(err)) from None
        self.pseudo_masks = pseudo_masks
        self.region_settings = dict(region_settings or {})
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()  # stderr stays for the one-line errors and warnings
        tlog.disable_progress_bar()
        t0 = time.perf_counter()
        try:
            self.pipe = RegionSpecificEditPipeline.from_pretrained(self.model_dir, pseudo_masks=pseudo_masks,
                                                                   region_settings=self.region_settings, device=device)
        except (OSError, ValueError) as err:  # a corrupt or incomplete component
            raise InputError(f"--model {self.model_dir}: cannot load ({' '.join(str(err).split())[:300]})") from None
        self.load_seconds = time.perf_counter() - t0
        self.model_sha256 = model_sha256(self.model_dir)
        self.size_factor = self.pipe.vae_scale_factor * self.pipe.unet_factor

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        check_image_size(image, self.size_factor, name)

    def edit(self, image: np.ndarray, settings: EditSettings, user_mask: np.ndarray | None = None,
             progress=None) -> EditResult:
        """Edit ``image`` (uint8, H x W); ``user_mask`` is a bool mask of the image's shape, or None."""
        from instructx2x.masks import parse_operations

        settings.validate()
        self.check_image(image)
        if settings.rse and user_mask is None and self.pseudo_masks is None:
            raise InputError("RSE without a user mask needs pseudo masks (--masks results/masks/pseudo_masks.npz)")
        t0 = time.perf_counter()
        out = self.pipe(image, settings.instruction, user_mask=user_mask, seed=settings.seed, steps=settings.steps,
                        tau=settings.tau, t_rel=settings.t_rel, image_guidance_scale=settings.image_guidance_scale,
                        guidance_scale=settings.guidance_scale, rse=settings.rse, decode=settings.decode,
                        callback=progress)
        edit_s = time.perf_counter() - t0
        diff, peak = difference_map(image, out.edited)
        try:
            operations = parse_operations(settings.instruction)
        except ValueError:
            operations = None
        record = {
            "model": {"path": str(self.model_dir), "sha256": self.model_sha256},
            "instruction": settings.instruction,
            "operations": operations,
            "settings": settings.as_dict(),
            "mode": out.mode,
            "mask_source": out.mask_source,
            "mask_detail": out.mask_detail,
            "fallback": out.fallback,
            "categories": out.categories,
            "relevance_constant": out.relevance_constant,
            "edited_fraction": out.info["edited_fraction"],
            "difference_max": peak,
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0]),
                      "sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()},
            "timing": {"edit_s": round(edit_s, 4), "model_load_s": round(self.load_seconds, 4)},
        }
        return EditResult(out, record, diff)
