"""Shared fixtures. The synthetic demo dataset is generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset (16 patients, seed 7), generated once per test session.

    Returns OUT_DIR: ``OUT_DIR/physionet.org/files/<slug>/<version>/...`` (PhysioNet layout),
    ``OUT_DIR/ground_truth/*.parquet`` (see docs/synthetic.md) and ``OUT_DIR/demo_manifest.parquet``.
    """
    from instructx2x.synthetic.generate import generate_dataset

    out = tmp_path_factory.mktemp("demo_dataset")
    generate_dataset(out, patients=16, seed=7, manifest_path=out / "demo_manifest.parquet")
    return out
