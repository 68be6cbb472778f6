"""Phantom radiographs: anatomy, identity traits and findings drawn in a patient's reference frame,
then moved into the image by the acquisition transform of ``truth.transform_matrix``.

Frontal (PA/AP) reference frame: 512 x 448 (H x W), radiological convention: the patient's RIGHT
lung is on the image LEFT, the patient's LEFT on the image RIGHT. Lung shapes are real lung masks
from torchxrayvision's ``data/semantic_masks_v7labs_lungs.zip``. Lateral reference frame: the
patient faces image left (anterior = left, posterior/spine = right).
"""

from __future__ import annotations

import functools
import io
import math
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .truth import FINDING_BY_NAME, REF_FRONTAL, N_LUNG_TEMPLATES

H, W = REF_FRONTAL
CX = (W - 1) / 2
LUNG_BOX = (74, 78, 374, 408)  # x0, y0, x1, y1 of both lungs together in the reference frame
SOFT = {"white": 0.40, "black": 0.47, "asian": 0.35, "hispanic": 0.43, "other": 0.38}
BODY_WIDTH = {"white": 1.0, "black": 1.05, "asian": 0.93, "hispanic": 1.02, "other": 0.97}
CTR = (0.46, 0.56, 0.62, 0.68)  # cardiothoracic ratio: normal, then cardiomegaly mild/moderate/severe


def _lung_zip() -> Path:
    # locate the installed package without importing it (importing torchxrayvision loads torch)
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("torchxrayvision is not installed: its lung masks are needed for the phantoms")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "semantic_masks_v7labs_lungs.zip"


@functools.lru_cache(maxsize=1)
def lung_templates() -> tuple:
    """``N_LUNG_TEMPLATES`` (right_lung, left_lung) boolean masks in the frontal reference frame.

    Taken, in sorted name order, from the first masks of the zip that hold exactly two large
    connected components (one per lung); each is cropped to the lungs and resized to LUNG_BOX.
    """
    out = []
    x0, y0, x1, y1 = LUNG_BOX
    with zipfile.ZipFile(_lung_zip()) as z:
        for name in sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg"))):
            im = Image.open(io.BytesIO(z.read(name)))
            im.draft("L", (400, 400))
            a = np.asarray(im.convert("L").resize((300, 300), Image.NEAREST)) > 127
            lab, k = ndimage.label(a)
            if k < 2:
                continue
            sizes = ndimage.sum(np.ones_like(a), lab, range(1, k + 1))
            big = np.argsort(sizes)[::-1][:2] + 1
            if sizes[big[1] - 1] < 0.5 * sizes[big[0] - 1] or sizes[big[0] - 1] < 2000:
                continue
            both = np.isin(lab, big)
            ys, xs = np.nonzero(both)
            crop = both[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
            m = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize((x1 - x0, y1 - y0), Image.BILINEAR)) > 127
            full = np.zeros((H, W), bool)
            full[y0:y1, x0:x1] = m
            full = ndimage.binary_opening(full, iterations=2)
            right = full.copy()
            right[:, int(CX):] = False   # image left = patient's right
            left = full.copy()
            left[:, : int(CX)] = False
            if right.sum() < 1000 or left.sum() < 1000:
                continue
            out.append((right, left))
            if len(out) == N_LUNG_TEMPLATES:
                break
    if len(out) < N_LUNG_TEMPLATES:
        raise RuntimeError(f"only {len(out)} usable lung masks in {_lung_zip()}")
    return tuple(out)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@functools.lru_cache(maxsize=None)
def lung_boxes(template: int) -> dict[str, tuple]:
    right, left = lung_templates()[template]
    return {"right": _bbox(right), "left": _bbox(left)}


def heart_geometry(template: int, level_rank: int | None, view: str = "PA"):
    """(cx, cy, half_width, half_height) of the heart; level_rank None = normal size."""
    b = lung_boxes(template)
    span = b["left"][2] - b["right"][0]
    ly1 = max(b["left"][3], b["right"][3])
    ctr = CTR[0 if level_rank is None else level_rank + 1]
    hw = span * ctr / 2 * (1.08 if view == "AP" else 1.0)
    return CX + 0.12 * hw, ly1 - 70, hw, 58 + 20 * ctr


def finding_boxes(template: int, finding: str, side: str | None, zone: str | None, level_rank: int) -> list[tuple]:
    """Boxes (x0, y0, x1, y1, reference-frame pixels) of where a finding is drawn on a frontal view."""
    b = lung_boxes(template)
    sides = ["right", "left"] if side in (None, "bilateral") else [side]
    out = []
    if finding == "cardiomegaly":
        cx, cy, hw, hh = heart_geometry(template, level_rank)
        return [(cx - hw, cy - hh, cx + hw, cy + hh)]
    for s in sides:
        x0, y0, x1, y1 = b[s]
        w, h = x1 - x0, y1 - y0
        if finding == "pleural effusion":
            frac = (0.2, 0.38, 0.6)[level_rank]
            out.append((x0, y1 - frac * h, x1, y1))
        elif finding == "pneumothorax":
            frac = (0.25, 0.4, 0.6)[level_rank]
            out.append((x0, y0, x1, y0 + frac * h))
        elif finding == "atelectasis":
            t = (5, 8, 12)[level_rank]
            yc = y1 - 0.22 * h
            out.append((x0 + 0.15 * w, yc - t, x1 - 0.15 * w, yc + t))
        elif finding == "edema":
            out.append((x0 + 0.1 * w, y0 + 0.2 * h, x1 - 0.1 * w, y1 - 0.15 * h))
        else:  # consolidation, pneumonia, lung opacity: a blob in a zone
            zi = {"upper": 0, "middle": 1, "lower": 2}[zone]
            yc = y0 + (zi + 0.5) * h / 3
            xc = (x0 + x1) / 2
            r = (0.16, 0.22, 0.30)[level_rank] * w
            out.append((max(x0, xc - r), max(y0, yc - r), min(x1, xc + r), min(y1, yc + r)))
    return out


@functools.lru_cache(maxsize=1)
def _grid():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return yy, xx


def _texture(seed: int, amp: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.standard_normal((H // 8, W // 8)).astype(np.float32)
    big = ndimage.zoom(small, 8, order=1)
    fine = ndimage.gaussian_filter(rng.standard_normal((H, W)).astype(np.float32), 1.2)
    return amp * (0.6 * big + 0.8 * fine)


def _line(yy, xx, p0, p1, thick):
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / L2, 0, 1)
    d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    return np.clip(1 - d / thick, 0, 1)


def render_frontal(patient: dict, findings: list[dict], view: str, texture_seed: int) -> np.ndarray:
    """Density image (float32, ~0..1, white = dense) of a PA or AP view in the reference frame."""
    yy, xx = _grid()
    tpl = int(patient["lung_template"])
    right, left = lung_templates()[tpl]
    lungs = right | left
    group = patient["race_group"]
    age = float(patient["age"])
    bone = 1.25 - 0.007 * age
    soft = SOFT[group]
    bw = 205 * BODY_WIDTH[group] * float(patient["habitus"])
    D = np.full((H, W), 0.03, np.float32)
    body = ((xx - CX) / bw) ** 2 + ((yy - 330) / 345) ** 2 < 1
    D[body] = soft
    neck = (np.abs(xx - CX) < 48) & (yy < 120)
    D[neck] = soft
    b = lung_boxes(tpl)
    ly0 = min(b["right"][1], b["left"][1])
    ly1 = max(b["right"][3], b["left"][3])
    D[body & (yy > ly1 - 40) & ~lungs] = soft + 0.08  # below the diaphragm
    tex = _texture(texture_seed, 0.035)
    lung_d = np.float32(0.15) + tex
    # findings that change the lung parenchyma
    fd = {f["finding"]: f for f in findings}
    add = np.zeros((H, W), np.float32)
    ptx = np.zeros((H, W), bool)
    for f in findings:
        name, rank = f["finding"], int(f["level_rank"])
        boxes = finding_boxes(tpl, name, f["side"], f["zone"], rank)
        sides = ["right", "left"] if f["side"] in (None, "bilateral") else [f["side"]]
        for s, (x0, y0, x1, y1) in zip(sides, boxes):
            lung = right if s == "right" else left
            if name == "pleural effusion":
                lat = np.abs(xx - CX) / max(1.0, abs((x1 if s == "left" else x0) - CX))
                cut = y0 + 0.35 * (y1 - y0) * (1 - np.clip(lat, 0, 1))
                fluid = lung & (yy > cut)
                add[fluid] = np.maximum(add[fluid], 0.42)
            elif name == "pneumothorax":
                ptx |= lung & (yy < y1) & (np.abs(xx - CX) > (abs(x0 - CX) + abs(x1 - CX)) / 2 - 0.2 * (y1 - yy))
            elif name == "atelectasis":
                band = _line(yy, xx, (x0, (y0 + y1) / 2 + 4), (x1, (y0 + y1) / 2 - 4), (y1 - y0) / 2)
                add += 0.3 * band * lung
            elif name == "edema":
                hx = CX + (55 if s == "left" else -55)
                g = np.exp(-((xx - hx) ** 2 + (yy - (y0 + y1) / 2) ** 2) / (2 * 70.0 ** 2))
                add += (0.08, 0.14, 0.2)[rank] * g * lung + (0.02 + 0.02 * rank) * lung * (tex > 0.02)
            elif name in ("consolidation", "pneumonia", "lung opacity"):
                xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
                r = max(6.0, (x1 - x0) / 2)
                g = np.exp(-((xx - xc) ** 2 + (yy - yc) ** 2) / (2 * (0.6 * r) ** 2))
                amp = {"consolidation": (0.22, 0.3, 0.4), "pneumonia": (0.16, 0.24, 0.32),
                       "lung opacity": (0.1, 0.15, 0.22)}[name][rank]
                if name == "pneumonia":
                    g = g * (1 + 6 * np.clip(tex, -0.1, 0.1))
                add += amp * g * lung
    lung_d = np.where(ptx, np.float32(0.05), lung_d)
    D = np.where(lungs, lung_d + add, D)
    # pleural line of a pneumothorax
    if ptx.any():
        edge = ptx ^ ndimage.binary_erosion(ptx, iterations=2)
        D[edge] += 0.2
    # mediastinum and spine
    med = (np.abs(xx - CX) < 34) & (yy < ly1) & (yy > 60)
    D[med] = np.maximum(D[med], 0.58)
    spine = (np.abs(xx - CX) < 22) & (((yy.astype(np.int32)) % 26) < 20)
    D[spine & body] += 0.05 * bone
    # heart (+ cardiomegaly)
    card = fd.get("cardiomegaly")
    hcx, hcy, hw, hh = heart_geometry(tpl, None if card is None else int(card["level_rank"]), view)
    heart = ((xx - hcx) / hw) ** 2 + ((yy - hcy) / hh) ** 2 < 1
    D[heart] = np.maximum(D[heart], 0.6)
    # aortic knob, calcified with age
    ak = np.hypot(xx - (CX + 30), yy - (ly0 + 70))
    D[ak < 17] = np.maximum(D[ak < 17], 0.58)
    if age >= 55:
        ring = (ak > 14) & (ak < 17) & (yy < ly0 + 70)
        D[ring] += 0.3 * min(1.0, (age - 50) / 35)
    # ribs (posterior arcs) and clavicles, brightness = bone density (age)
    thorax = body & (yy > ly0 - 20) & (yy < ly1 + 10)
    dx = np.abs(xx - CX)
    phase = (yy - 0.0022 * (dx - 30) ** 2 + 0.25 * dx) % 30.0
    ribs = thorax & (phase < 9) & (dx > 30)
    D[ribs] += 0.09 * bone
    cy = ly0 + (8 if view == "PA" else -10)
    for sgn in (-1, 1):
        D += 0.22 * bone * _line(yy, xx, (CX + sgn * 22, cy + 18), (CX + sgn * 160, cy - 6), 7) * body
        if view == "AP":  # scapular borders over the lungs
            D += 0.08 * bone * _line(yy, xx, (CX + sgn * 150, ly0 + 10), (CX + sgn * 170, ly0 + 170), 4)
    # breasts (sex)
    if patient["gender"] == "F":
        for sgn in (-1, 1):
            e = ((xx - (CX + sgn * 100)) / 85) ** 2 + ((yy - (ly1 - 45)) / 60) ** 2
            D += (0.07 * np.clip(1.5 - e, 0, 1)).astype(np.float32)
    return ndimage.gaussian_filter(D, 1.2)


def render_lateral(patient: dict, findings: list[dict], texture_seed: int) -> np.ndarray:
    """Density image of a lateral view (patient facing image left) in the lateral reference frame."""
    yy, xx = _grid()
    group = patient["race_group"]
    bone = 1.25 - 0.007 * float(patient["age"])
    soft = SOFT[group]
    D = np.full((H, W), 0.03, np.float32)
    body = ((xx - CX) / (175 * BODY_WIDTH[group] * float(patient["habitus"]))) ** 2 + ((yy - 300) / 330) ** 2 < 1
    D[body] = soft
    dia = 385 + 0.0025 * (xx - 210) ** 2 - 0.12 * (xx - 210)
    lung = (((xx - 232) / 140) ** 2 + ((yy - 250) / 185) ** 2 < 1) & (yy < dia)
    tex = _texture(texture_seed, 0.03)
    fd = {f["finding"]: f for f in findings}
    add = np.zeros((H, W), np.float32)
    for f in findings:
        rank = int(f["level_rank"])
        if f["finding"] == "pleural effusion":
            hgt = (18, 40, 75)[rank]
            add += 0.4 * (lung & (yy > dia - hgt * np.clip((xx - 200) / 150, 0, 1.2)) & (xx > 220))
        elif f["finding"] == "edema":
            add += (0.06, 0.1, 0.15)[rank] * lung * np.exp(-((xx - 230) ** 2 + (yy - 250) ** 2) / (2 * 80.0 ** 2))
        elif f["finding"] in ("consolidation", "pneumonia", "lung opacity"):
            yc = {"upper": 150, "middle": 250, "lower": 330}[f["zone"]]
            g = np.exp(-((xx - 240) ** 2 + (yy - yc) ** 2) / (2 * (25 + 8 * rank) ** 2))
            add += (0.12 + 0.06 * rank) * g * lung
        elif f["finding"] == "atelectasis":
            add += 0.2 * _line(yy, xx, (170, 340), (320, 330), 4 + 3 * rank) * lung
    D = np.where(lung, 0.17 + tex + add, D)
    card = fd.get("cardiomegaly")
    k = CTR[0 if card is None else int(card["level_rank"]) + 1] / CTR[0]
    heart = ((xx - (170 + 10 * k)) / (70 * k)) ** 2 + ((yy - 320) / (78 * min(k, 1.2))) ** 2 < 1
    D[heart & body] = np.maximum(D[heart & body], 0.52)
    vert = (np.abs(xx - 365) < 24) & ((yy.astype(np.int32) % 28) < 22) & (yy > 60) & (yy < 480)
    D[vert] = np.maximum(D[vert], 0.45 + 0.2 * bone)
    D += 0.15 * bone * _line(yy, xx, (92, 130), (80, 330), 5) * body  # sternum
    if patient["gender"] == "F":
        D += (0.06 * np.clip(1.4 - (((xx - 55) / 50) ** 2 + ((yy - 330) / 70) ** 2), 0, 1)).astype(np.float32)
    return ndimage.gaussian_filter(D, 1.2)


def acquire(density: np.ndarray, matrix: np.ndarray, out_hw, exposure: float, gamma: float,
            noise_sigma: float, noise_seed: int, mirrored: bool) -> np.ndarray:
    """Move a reference-frame density into an image (2x3 ``matrix`` ref->image), expose, add noise; uint8."""
    A = matrix[:, :2]
    t = matrix[:, 2]
    inv = np.linalg.inv(A)
    # scipy works in (row, col) = (y, x): swap axes of the inverse map
    M = inv[::-1, ::-1]
    off = -(inv @ t)[::-1]
    img = ndimage.affine_transform(density, M, offset=off, output_shape=tuple(out_hw), order=1, cval=0.02)
    rng = np.random.default_rng(noise_seed)
    img = np.clip(img * 1.45 * exposure, 0, 1) ** gamma
    img = img + rng.normal(0, noise_sigma, img.shape).astype(np.float32)
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    if mirrored:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def encode_jpeg(img: np.ndarray) -> bytes:
    """Fixed JPEG settings (8-bit grayscale, quality 95, no metadata) so output bytes are reproducible."""
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=95, optimize=False, progressive=False)
    return buf.getvalue()


def box_to_image(box, matrix: np.ndarray, out_hw, mirrored: bool = False) -> tuple[int, int, int, int]:
    """Axis-aligned integer COCO box (x, y, w, h) in image pixels of a reference-frame box."""
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], float)
    q = pts @ matrix.T
    if mirrored:
        q[:, 0] = out_hw[1] - 1 - q[:, 0]
    qx0, qy0 = max(0.0, q[:, 0].min()), max(0.0, q[:, 1].min())
    qx1, qy1 = min(out_hw[1] - 1.0, q[:, 0].max()), min(out_hw[0] - 1.0, q[:, 1].max())
    return int(qx0), int(qy0), max(1, int(math.ceil(qx1 - qx0))), max(1, int(math.ceil(qy1 - qy0)))
