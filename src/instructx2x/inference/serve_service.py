"""What the routes of ``instructx2x serve`` call: upload decoding and limits, the demo gallery, edits and
variation grids through the one ``editor.Editor`` that ``instructx2x edit`` runs too."""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instructx2x.core.errors import InputError
from instructx2x.inference.serve_jobs import JobQueue

log = logging.getLogger(__name__)


SEVERITIES = ("small", "moderate", "large")


SIDES = ("left", "right", "bilateral")


@dataclass
class Limits:
    max_bytes: int = 32 * 2**20
    max_pixels: int = 4096 * 4096


def load_gallery(source, size: int = 12, max_pixels: int = 4096 * 4096) -> list[dict]:
    """Demo inputs to start from, read once at start-up: the test/holdout inputs of an
    instructions table (with their instructions), or the PNG/JPG files of a directory."""

    from instructx2x.core.images import read_gray
    from instructx2x.inference.editor import png_bytes

    if not source:
        return []
    source = Path(source)
    entries = []
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
        entries = [(p, "") for p in files]
    elif source.is_file():
        from instructx2x.core.paths import read_parquet

        df = read_parquet(source)  # image paths relative to the results directory come back absolute
        if "split" in df.columns:
            df = df[df["split"].isin(["test", "holdout"])]
        df = df.sort_values("pair_id", kind="stable") if "pair_id" in df.columns else df
        seen = set()
        for row in df.itertuples(index=False):
            p = Path(str(row.past_image))
            if not p.is_absolute() and not p.exists():
                p = source.parent / p
            if str(p) not in seen:
                seen.add(str(p))
                entries.append((p, str(getattr(row, "instruction", "") or "")))
    else:
        log.warning("gallery %s not found: the page starts with uploads only", source)
    gallery = []
    for path, instruction in entries:
        if len(gallery) >= size:
            break
        try:
            image = read_gray(path, max_pixels=max_pixels)
        except InputError as err:
            log.warning("gallery: skipped %s", err)
            continue
        gallery.append({"name": path.name, "instruction": instruction, "png": png_bytes(image),
                        "width": int(image.shape[1]), "height": int(image.shape[0])})
    return gallery


def named_bytes(data: bytes, name: str) -> io.BytesIO:
    """Uploaded bytes as a file object whose name (for messages and the DICOM check) is ``name``."""
    buf = io.BytesIO(data)
    buf.name = name
    return buf


class Service:
    """The editor behind the routes: decoding and checking uploads, queueing edits, results."""

    def __init__(self, editor, gallery=(), limits: Limits | None = None, max_pending: int = 8):
        self.editor = editor
        self.gallery = list(gallery)
        self.limits = limits or Limits()
        self.jobs = JobQueue(max_pending)

    # -- inputs --------------------------------------------------------------------------------

    def read_image(self, name: str, data: bytes) -> np.ndarray:
        """An uploaded image (PNG/JPG/DICOM) as the editor reads it, checked against the model's size factor."""
        from instructx2x.core.images import read_gray

        if not data:
            raise InputError(f"image upload {name}: empty file")
        image = read_gray(named_bytes(data, f"image upload {name}"), max_pixels=self.limits.max_pixels)
        self.editor.check_image(image, f"image upload {name}")
        return image

    def decode(self, fields: dict):
        """(image, settings, user mask, input PNG bytes) from the form fields, or an InputError."""
        from instructx2x.core.images import read_gray
        from instructx2x.inference.editor import EditSettings, png_bytes, user_mask_from_gray

        image_field = fields.get("image")
        if image_field is None:
            raise InputError("no 'image' file in the form (multipart field 'image')")
        name, data = image_field
        if not data:
            raise InputError(f"image upload {name}: empty file")
        raw = fields.get("settings")
        if raw is None:
            raise InputError("no 'settings' field in the form (JSON with at least 'instruction')")
        try:
            obj = json.loads(raw[1] if isinstance(raw, tuple) else raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"settings is not valid JSON ({err})") from None
        settings = EditSettings.from_json(obj)
        image = self.read_image(name, data)
        user_mask = None
        if fields.get("user_mask") is not None:
            mname, mdata = fields["user_mask"]
            mask = read_gray(named_bytes(mdata, f"user mask {mname}"), max_pixels=self.limits.max_pixels,
                             check_content=False)
            user_mask = user_mask_from_gray(mask, image.shape, f"user mask {mname}")
        if settings.rse and user_mask is None and self.editor.pseudo_masks is None:
            raise InputError("this server has no pseudo masks (--masks): draw a mask or turn RSE off")
        return image, settings, user_mask, png_bytes(image)

    # -- work ----------------------------------------------------------------------------------

    def edit_job(self, image, settings, user_mask, input_png):
        def fn(progress):
            result = self.editor.edit(image, settings, user_mask=user_mask, progress=progress)
            images = result.images()
            payload = {"record": result.record, "images": {k: base64.b64encode(v).decode() for k, v in images.items()}}
            archive = {"input.png": input_png, **{f"{k}.png": v for k, v in images.items()},
                       "record.json": json.dumps(result.record, indent=2).encode()}
            return payload, archive
        return fn

    def variations_job(self, image, settings, user_mask, input_png):
        from instructx2x.instructions.grammar import render_instruction
        from instructx2x.instructions.operation import Operation
        from instructx2x.masks import parse_operations

        try:
            ops = parse_operations(settings.instruction)
        except ValueError as err:
            raise InputError(f"variations need a parsed instruction ({err})") from None
        first = ops[0]
        verb = "remove" if first.get("op") == "remove" else "add"
        grid = [[render_instruction([Operation(op=verb, finding=first["finding"], location=side, severity=sev)])
                 for side in SIDES] for sev in SEVERITIES]

        def fn(progress):
            from dataclasses import replace

            n = len(SEVERITIES) * len(SIDES)
            cells, variants = [], []
            for k, text in enumerate(t for row in grid for t in row):
                def step(done, total, k=k):
                    progress(k * total + done, n * total)
                res = self.editor.edit(image, replace(settings, instruction=text), user_mask=user_mask, progress=step)
                cells.append(res.output.edited)
                variants.append({"instruction": text, "mask_source": res.record["mask_source"],
                                 "mask_detail": res.record["mask_detail"], "edited_fraction": res.record["edited_fraction"]})
            png = variations_grid(cells, [t for row in grid for t in row])
            record = {"model": {"path": str(self.editor.model_dir), "sha256": self.editor.model_sha256},
                      "instruction": settings.instruction, "settings": settings.as_dict(), "variants": variants,
                      "rows": list(SEVERITIES), "columns": list(SIDES)}
            payload = {"record": record, "images": {"grid": base64.b64encode(png).decode()}}
            return payload, {"input.png": input_png, "variations.png": png,
                             "record.json": json.dumps(record, indent=2).encode()}
        return fn


def variations_grid(cells: list[np.ndarray], labels: list[str], cols: int = len(SIDES)) -> bytes:
    """The edited images in a grid (rows: severity, columns: side), each labelled with its instruction."""
    from PIL import Image, ImageDraw

    from instructx2x.inference.editor import png_bytes

    h, w = cells[0].shape
    label_h = 14
    scale = max(1, 192 // max(h, w))
    ch, cw = h * scale + label_h, w * scale
    rows = (len(cells) + cols - 1) // cols
    canvas = Image.new("L", (cols * cw + (cols - 1) * 4, rows * ch + (rows - 1) * 4), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (cell, label) in enumerate(zip(cells, labels)):
        x, y = (i % cols) * (cw + 4), (i // cols) * (ch + 4)
        canvas.paste(Image.fromarray(cell).resize((cw, h * scale), Image.NEAREST), (x, y + label_h))
        draw.text((x + 2, y + 1), label.replace("Add a ", "").replace("Remove the ", "- ")[: cw // 6], fill=0)
    return png_bytes(np.asarray(canvas))


