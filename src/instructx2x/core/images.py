"""The one image reader: every stage and every CLI reads radiographs through ``read_gray``.

What it accepts, the same everywhere (pipeline, ``register``, ``edit``, ``serve``):

- 8-bit greyscale PNG/JPG: returned as is (no rescaling, so existing outputs stay byte-identical);
- 16-bit (and 32-bit integer / float) greyscale: windowed to 8 bits by the image's *own* range
  (its minimum to its maximum), never clipped to 255 (a 16-bit radiograph read with a plain
  ``convert("L")`` comes out almost all white);
- RGB, RGBA, LA, CMYK, palette and 1-bit images: converted to luminance (alpha is ignored);
- DICOM (``DICM`` at byte 128, or a ``.dcm``/``.dicom`` name), read with pydicom: the modality LUT
  (rescale slope/intercept) is applied, then the file's own window (the first Window Center/Width,
  linear as in PS3.3 C.11.2.1.2) or VOI LUT; without either, its own range as for 16-bit PNGs.
  MONOCHROME1 (white = low values) is inverted so that bone is bright, as in every other format.

What it refuses, with a one-line reason a user can act on (``UnreadableImage``):

- anything the decoder cannot read (the decoder's own message is kept);
- images smaller than ``MIN_SIDE`` pixels on a side;
- images with more than ``MAX_PIXELS`` pixels (the decompression-bomb limit: checked from the
  header before any pixel is decoded);
- constant or near-constant images (fewer than ``MIN_DYNAMIC_RANGE`` grey levels between the
  0.5th and 99.5th percentiles), which carry no anatomy to register or edit.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from instructx2x.core.errors import InputError

MIN_SIDE = 16
# 50 megapixels: a MIMIC-CXR JPG is about 3,000 x 2,500 (7.5 MP); the largest digital detectors give
# 4,300 x 4,300 (18.5 MP). Anything larger is refused before it is decoded.
MAX_PIXELS = 50_000_000
MIN_DYNAMIC_RANGE = 4.0


class UnreadableImage(InputError):
    """The file cannot be used as a radiograph; ``str(exc)`` is a one-line reason."""


def _source_name(source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "<upload>"


def _to_gray8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        finite = np.isfinite(arr)
        if not finite.any():
            raise UnreadableImage("no finite pixel values")
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.uint8)
        arr = np.where(finite, arr, lo)
        return np.round((arr - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0), dtype=np.uint8).copy()
    if mode == "PA":
        im = im.convert("RGBA")
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


DICOM_SUFFIXES = (".dcm", ".dicom")


def _read_pil(source, name: str, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise UnreadableImage(
                    f"{name}: image is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,} "
                    "(decompression-bomb guard)"
                )
            im.load()  # truncated files raise here (LOAD_TRUNCATED_IMAGES stays False)
            return _to_gray8(im)


def _is_dicom(fh: BinaryIO, name: str) -> bool:
    pos = fh.tell()
    head = fh.read(132)
    fh.seek(pos)
    return head[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _read_dicom(fh: BinaryIO, max_pixels: int) -> np.ndarray:
    """One DICOM image as 8-bit greyscale (windowed, MONOCHROME1 inverted); errors: UnreadableImage."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(fh, force=True)
    if "PixelData" not in ds:
        raise UnreadableImage("DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise UnreadableImage(
            f"image is {cols}x{rows} = {rows * cols:,} pixels; the limit is {max_pixels:,} (decompression-bomb guard)"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise UnreadableImage(f"DICOM file has {frames} frames; one image is expected")
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour (RGB after pydicom's YBR conversion): luminance, no windowing
        return np.asarray(Image.fromarray(arr.astype(np.uint8)).convert("L"), dtype=np.uint8).copy()
    values = apply_modality_lut(arr, ds).astype(np.float64)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        if w < 1:
            raise UnreadableImage(f"DICOM window width {w} < 1")
        if str(ds.get("VOILUTFunction", "LINEAR")).upper() == "LINEAR_EXACT":
            unit = (values - c) / w + 0.5
        else:  # LINEAR (PS3.3 C.11.2.1.2.1)
            unit = (values - (c - 0.5)) / max(w - 1, 1) + 0.5
        out = unit.clip(0, 1) * 255.0
    else:
        if "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
        lo, hi = float(values.min()), float(values.max())
        out = np.zeros_like(values) if hi <= lo else (values - lo) * (255.0 / (hi - lo))
    gray = np.round(out).clip(0, 255).astype(np.uint8)
    return 255 - gray if photometric == "MONOCHROME1" else gray


def read_gray(
    source: str | Path | bytes | BinaryIO,
    *,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
    check_content: bool = True,
) -> np.ndarray:
    """Read a radiograph as an 8-bit greyscale array (H x W, uint8).

    ``source`` is a path, raw bytes or a binary file object. Every reason it cannot be used
    raises ``UnreadableImage`` with one line naming the file and what was wrong.
    ``check_content=False`` skips the near-constant check (masks are legitimately flat).
    """
    name = _source_name(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as fh:
                arr = _read_dicom(fh, max_pixels) if _is_dicom(fh, name) else _read_pil(fh, name, max_pixels)
        else:
            arr = _read_dicom(source, max_pixels) if _is_dicom(source, name) else _read_pil(source, name, max_pixels)
    except UnreadableImage as exc:
        msg = str(exc)
        raise UnreadableImage(msg if msg.startswith(name) else f"{name}: {msg}") from None
    except FileNotFoundError:
        raise UnreadableImage(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UnreadableImage(f"{name}: is a directory, expected an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImage(f"{name}: decompression-bomb guard: {exc}") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImage(f"{name}: cannot decode image (not an image file: PNG, JPG, TIFF... or DICOM expected)") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure is reported with its own words
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UnreadableImage(f"{name}: cannot decode image ({type(exc).__name__}: {reason})") from None
    if arr.ndim != 2 or min(arr.shape) < min_side:
        raise UnreadableImage(
            f"{name}: image is {arr.shape[1] if arr.ndim > 1 else '?'}x{arr.shape[0]} pixels; "
            f"at least {min_side} px per side expected"
        )
    if check_content:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        if hi - lo < MIN_DYNAMIC_RANGE:
            raise UnreadableImage(
                f"{name}: constant or near-constant image (grey levels {lo:.0f}-{hi:.0f}); "
                "a radiograph with visible anatomy is expected"
            )
    return arr


def resize_square(arr: np.ndarray, size: int) -> np.ndarray:
    """An 8-bit grey image resized to ``size``² (antialiased bilinear, as PIL does when shrinking;
    anisotropic when the image is not square). Used wherever a stage needs a fixed square input."""
    if arr.shape == (size, size):
        return arr.copy()
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
