"""The conda environment files (``envs/*.yaml``) as Snakemake uses them.

- Every pin equals ``requirements.lock``, and each env pins its *full* transitive set: every
  dependency of every pinned distribution (markers evaluated for this platform, extras followed)
  is pinned in the same env. The closure is read from the installed distributions' metadata (the
  project venv holds exactly the lock).
- No env installs the project (``-e ..`` would point at ``.snakemake/conda/`` where Snakemake
  copies the file): rule scripts reach ``src/`` through ``workflow_scripts/_job.py``.
- Slow: the pip part of ``envs/acquire.yaml`` is installed with ``--no-deps`` into a fresh venv
  (no conda here), ``pip check`` must find every requirement satisfied (the pins are closed), and
  that venv's own Snakemake runs the ``ingest`` rule's script on a demo dataset, with instructx2x
  not installed in it.

Regenerate the pip lists after a lock change: ``.venv/bin/python tests/test_envs.py`` (keeps each
env's pins, adds what they depend on, takes the versions from the lock).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = ("acquire", "preprocess", "model")


def lock_pins(repo_root: Path = REPO) -> dict[str, tuple[str, str]]:
    """{canonical name: (name as written, version)} of requirements.lock."""
    pins = {}
    for line in (repo_root / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = (name.strip(), version.strip())
    return pins


def env_pip(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def closure(names) -> set[str]:
    """Canonical names of ``names`` and everything they depend on (installed metadata)."""
    extras_of: dict[str, frozenset] = {}
    todo = [(canonicalize_name(n), frozenset()) for n in names]
    while todo:
        name, extras = todo.pop()
        if name in extras_of and extras <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, frozenset()) | extras
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            raise AssertionError(f"{name} is needed but not installed in {sys.prefix}") from None
        for spec in requires:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras_of[name])):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return set(extras_of)


def test_env_files_pin_the_lock_and_are_closed(repo_root):
    lock = lock_pins(repo_root)
    env_files = sorted((repo_root / "envs").glob("*.yaml"))
    assert {p.stem for p in env_files} >= set(ENVS)
    for path in env_files:
        env = yaml.safe_load(path.read_text())
        assert env["name"].startswith("instructx2x-"), path
        assert "python=3.11" in env["dependencies"], path
        pip = env_pip(path)
        assert not [p for p in pip if p.startswith("-e") or p.startswith(".")], \
            f"{path}: installs the project; rule scripts import it from src/ (workflow_scripts/_job.py)"
        assert all("==" in p for p in pip), f"{path}: unpinned {[p for p in pip if '==' not in p]}"
        pins = {}
        for pin in pip:
            name, version = pin.split("==")
            key = canonicalize_name(name)
            assert key in lock, f"{path}: {name} is not in requirements.lock"
            assert lock[key][1] == version, f"{path}: {name}=={version} but requirements.lock has {lock[key][1]}"
            pins[key] = version
        missing = sorted(closure(pins) - set(pins))
        assert not missing, f"{path}: the pins depend on {missing}, which are not pinned (python {__file__})"


def test_lock_pins_the_machine_torch(repo_root):
    lock = lock_pins(repo_root)
    assert lock["torch"][1] == "2.14.1" and lock["torchvision"][1] == "0.29.1"


def test_every_rule_with_an_env_runs_scripts_that_find_src(repo_root):
    """Each workflow script imports _job first (src/ on the path, lineage recorded), every rule
    names an env file that exists."""
    scripts = sorted(p for p in (repo_root / "workflow_scripts").glob("*.py") if p.name != "_job.py")
    assert len(scripts) >= 20
    for script in scripts:
        code = [ln for ln in script.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        body = code[1:] if code[0].startswith('"""') and code[0].count('"""') == 2 else code
        assert body[0].startswith("import _job"), f"{script.name}: the first import must be `import _job`"
    for smk in (repo_root / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (repo_root / "rules" / env).resolve().is_file(), (smk.name, env)


@pytest.mark.slow
def test_acquire_env_in_a_fresh_venv_runs_the_ingest_script(repo_root, tmp_path, demo_dataset):
    """The pip part of envs/acquire.yaml alone (no --system-site-packages, no deps resolved by pip)
    runs a rule script that reaches the project from src/."""
    venv = tmp_path / "venv"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pins = env_pip(repo_root / "envs" / "acquire.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", *pins],
                             capture_output=True, text=True, env=env, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, f"the pins of envs/acquire.yaml are not closed:\n{check.stdout}"
    assert subprocess.run([str(py), "-c", "import instructx2x"], capture_output=True, env=env).returncode != 0
    install_s = time.monotonic() - t0

    # a work dir with the workflow and a demo dataset where the demo_data rule would put it
    work = tmp_path / "work"
    work.mkdir()
    for name in ("Snakefile", "config.yaml", "rules", "workflow_scripts", "src", "schemas", "envs"):
        src = repo_root / name
        (shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
         if src.is_dir() else shutil.copy2(src, work / name))
    raw = work / "results" / "raw"
    shutil.copytree(demo_dataset, raw / "demo", ignore=shutil.ignore_patterns("demo_manifest.parquet"))
    shutil.copy2(demo_dataset / "demo_manifest.parquet", raw / "demo_manifest.parquet")
    t1 = time.monotonic()
    run = subprocess.run([str(venv / "bin" / "snakemake"), "--cores", "1", "--allowed-rules", "ingest",
                          "--", "results/tables/images.parquet"],
                         cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert (work / "results" / "tables" / "images.parquet").stat().st_size > 0
    # the job ran the venv's Python and recorded its lineage with the venv's packages
    record = json.loads((work / "results/provenance/lineage/jobs/ingest/all.json").read_text())
    packages = json.loads(next((work / "results/provenance/lineage/packages").glob("*.json")).read_text())
    assert "torch" not in packages["packages"] and packages["packages"]["pandas"] == lock_pins()["pandas"][1]
    assert record["rule"] == "ingest" and any(o["path"] == "tables/images.parquet" for o in record["outputs"])
    print(f"fresh venv with {len(pins)} pins: {install_s:.0f} s; ingest rule: {time.monotonic() - t1:.0f} s")


def _write_closed_envs() -> None:
    """Rewrite each env's pip list as the closure of its pins, versions from the lock."""
    lock = lock_pins()
    for name in ENVS:
        path = REPO / "envs" / f"{name}.yaml"
        text = path.read_text()
        pins = [p.split("==")[0] for p in env_pip(path) if "==" in p]
        names = sorted(closure(pins), key=lambda n: lock[n][0].lower())
        block = "".join(f"      - {lock[n][0]}=={lock[n][1]}\n" for n in names)
        text = re.sub(r"(  - pip:\n)(?:      - .*\n)+", lambda m: m.group(1) + block, text)
        path.write_text(text)
        print(f"{path}: {len(pins)} -> {len(names)} pins")


if __name__ == "__main__":
    _write_closed_envs()
