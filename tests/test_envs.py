"""The conda environment files for HPC users parse and pin exactly what the tests run with."""

from __future__ import annotations

import yaml


def _lock(repo_root):
    pins = {}
    for line in (repo_root / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def test_env_files_parse_and_match_lock(repo_root):
    lock = _lock(repo_root)
    env_files = sorted((repo_root / "envs").glob("*.yaml"))
    assert {p.stem for p in env_files} >= {"acquire", "preprocess", "model"}
    for path in env_files:
        env = yaml.safe_load(path.read_text())
        assert env["name"].startswith("instructx2x-"), path
        assert "python=3.11" in env["dependencies"], path
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = [p for p in pip if "==" in p]
        assert pins, f"{path} pins nothing"
        for pin in pins:
            name, version = pin.split("==")
            key = name.lower().replace("_", "-")
            assert key in lock, f"{path}: {name} is not in requirements.lock"
            assert lock[key] == version, f"{path}: {name}=={version} but requirements.lock has {lock[key]}"


def test_lock_pins_the_machine_torch(repo_root):
    lock = _lock(repo_root)
    assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1"
