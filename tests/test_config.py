"""The config schema: defaults are filled in, bad values fail with the key that is wrong."""

from __future__ import annotations

import copy

import pytest
import yaml

from instructx2x.core.config import ConfigError, load_config, validate_config


def test_default_config_is_valid_and_complete(repo_root):
    config = load_config(repo_root / "config.yaml")
    assert config["source"] == "demo"
    assert config["datasets"]["mimic_cxr_jpg"]["slug"] == "mimic-cxr-jpg"


def test_defaults_are_filled(repo_root):
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    raw.pop("demo", None)
    config = validate_config(raw)
    assert config["demo"]["patients"] >= 2


@pytest.mark.parametrize(
    "patch, where",
    [
        ({"source": "s3"}, "source"),
        ({"seed": -1}, "seed"),
        ({"datasets": {"mimic_cxr_jpg": {"slug": "mimic cxr", "version": "2.1.0"}}}, "datasets.mimic_cxr_jpg.slug"),
        ({"unknown_key": 1}, "unknown_key"),
    ],
)
def test_bad_values_name_the_key(repo_root, patch, where):
    raw = yaml.safe_load((repo_root / "config.yaml").read_text())
    bad = copy.deepcopy(raw)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(bad.get(k), dict):
            for kk, vv in v.items():
                bad[k][kk] = vv
        else:
            bad[k] = v
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert where.split(".")[0] in str(err.value)
