"""A demo-shaped editor for tests and benchmarks of ``edit``/``serve``, built offline in seconds.

The model has the demo's architecture (``model.tiny`` of config.yaml, the components the training
stage builds, saved with ``model.build.save_pipeline`` in the layout of results/model/pipeline) with
its random initial weights: the real loading and editing code runs, only the training is skipped.
Pseudo masks: one box per MS-CXR category at the demo resolution. Gallery: frontal-sized inputs cut
from the synthetic demo dataset (grey, the demo resolution), as the demo's test inputs are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE = 128  # registration.resolution of the demo
INSTRUCTIONS = ("Add a moderate left pleural effusion", "Add a small right pleural effusion",
                "Add a large bilateral pleural effusion", "Remove the atelectasis in the right lung base",
                "Add cardiomegaly", "Add edema", "Add a small left pneumothorax", "Add a tumour")


def build_demo_model(out_dir, size: int = SIZE, seed: int = 0) -> Path:
    from instructx2x.core.config import load_config
    from instructx2x.model.build import build_tiny, save_pipeline
    from instructx2x.model.tokenizer import instruction_words

    cfg = dict(load_config(REPO / "config.yaml")["model"]["tiny"], sample_size=size)
    words = instruction_words(list(INSTRUCTIONS) + ["small moderate large left right bilateral remove add"])
    with tempfile.TemporaryDirectory() as tmp:
        comps = build_tiny(cfg, words, tmp, seed)
        return save_pipeline(comps, out_dir)


def write_pseudo_masks(path, size: int = SIZE) -> Path:
    from instructx2x.masks import CATEGORIES

    masks = {c: np.zeros((size, size), np.uint8) for c in CATEGORIES}
    s = size / 128
    box = lambda y0, y1, x0, x1: (slice(int(y0 * s), int(y1 * s)), slice(int(x0 * s), int(x1 * s)))  # noqa: E731
    masks["Pleural Effusion"][box(80, 118, 12, 116)] = 1
    masks["Atelectasis"][box(70, 110, 16, 112)] = 1
    masks["Cardiomegaly"][box(60, 105, 44, 92)] = 1
    masks["Edema"][box(30, 110, 16, 112)] = 1
    masks["Pneumothorax"][box(10, 60, 12, 116)] = 1
    for c in ("Consolidation", "Lung Opacity", "Pneumonia"):
        masks[c][box(30, 110, 16, 112)] = 1
    np.savez(path, resolution=np.int64(size), **masks)
    return Path(path)


def write_gallery(directory, n: int = 3, size: int = SIZE, seed: int = 7) -> Path:
    """``n`` grey PNG inputs of the demo's size, from the synthetic demo generator's JPGs."""
    from instructx2x.core.images import UnreadableImage, read_gray
    from instructx2x.synthetic.generate import generate_dataset

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(Path(tmp) / "demo", patients=2, seed=seed, manifest_path=Path(tmp) / "m.parquet")
        written = 0
        for jpg in sorted((Path(tmp) / "demo").rglob("*.jpg")):
            try:  # the demo plants unreadable files on purpose; they are not inputs
                arr = read_gray(jpg)
            except UnreadableImage:
                continue
            Image.fromarray(arr).resize((size, size), Image.BILINEAR).save(directory / f"demo_input_{written}.png")
            written += 1
            if written == n:
                break
    return directory


def build_demo_editor(root, size: int = SIZE) -> dict:
    root = Path(root)
    return {"model": build_demo_model(root / "model", size), "masks": write_pseudo_masks(root / "masks.npz", size),
            "gallery": write_gallery(root / "gallery", size=size)}
