"""Where the raw datasets live, for each ``source`` of the config.

All three sources end in the same layout, the one ``wget -r`` from PhysioNet produces:
``<raw_dir>/physionet.org/files/<slug>/<version>/...``.  ``source: local`` may instead point each
dataset at its own root (``datasets.<name>.root``).
"""

from __future__ import annotations

from pathlib import Path

DATASET_NAMES = ("mimic_cxr_jpg", "mimic_cxr", "mimiciv", "medical_diff_vqa", "ms_cxr")
# Written by the demo generator in its output folder: ``{"complete": false, ...}`` first, and
# ``{"complete": true, ...}`` as the very last file; ingest refuses a demo tree without the latter.
DEMO_MARKER = "demo_data.json"


def raw_dir(config: dict) -> Path:
    """The directory that holds ``physionet.org/files/...`` for the configured source."""
    source = config["source"]
    results = Path(config["results_dir"])
    if source == "demo":
        return results / "raw" / "demo"
    if source == "physionet":
        return results / "raw" / "physionet"
    if source == "local":
        return Path(config["local"]["raw_dir"]) if config["local"].get("raw_dir") else results / "raw" / "local"
    from instructx2x.core.config import ConfigError

    raise ConfigError(f"source: unknown source {source!r} (expected demo, local or physionet)")


def dataset_root(config: dict, name: str) -> Path:
    """Root directory (the ``<version>/`` folder) of one dataset."""
    if name not in DATASET_NAMES:
        raise KeyError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    spec = config["datasets"][name]
    if config["source"] == "local" and spec.get("root"):
        return Path(spec["root"])
    return raw_dir(config) / "physionet.org" / "files" / spec["slug"] / spec["version"]


def dataset_roots(config: dict) -> dict[str, Path]:
    return {name: dataset_root(config, name) for name in DATASET_NAMES}


def raw_manifest_path(config: dict) -> Path:
    """The manifest (every raw file: path, SHA-256, size, ...) written by the acquisition stage."""
    return Path(config["results_dir"]) / "raw" / f"{config['source']}_manifest.parquet"
