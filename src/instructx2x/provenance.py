"""Provenance: every output traced back to the raw files, config and code that made it.

``write_provenance`` writes ``results/provenance/``:

- ``config.resolved.yaml``: the validated config with every default filled in (credentials never
  live in the config; keys that look secret are refused),
- ``versions.json``: Python, platform, the versions of every installed distribution,
- ``git.json``: commit, branch and whether the work tree was dirty,
- ``invocations.tsv``: the Snakemake command lines that ran in this results directory,
- ``raw_manifest.parquet``: every raw file with its SHA-256 (copied from the acquisition stage),
- ``lineage.parquet``: every output file under the results directory with its SHA-256, size, the
  rule that made it, the rule's inputs and its code version (read from Snakemake's metadata),
- ``audit.json``: the result of ``audit`` run right after writing.

``audit(results_dir)`` re-hashes the raw files and every recorded output, checks that every input
of every output is itself recorded (an output or a raw file) and names each file that changed or
is missing. ``instructx2x audit RESULTS_DIR`` exits non-zero when anything did.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from instructx2x.core.io import atomic_path, write_json, write_parquet

PROVENANCE_DIRNAME = "provenance"
SECRET_KEY = re.compile(r"(pass(word)?|secret|token|credential)", re.IGNORECASE)
# files under results/ that are not pipeline outputs (transient, or provenance itself)
_SKIP_PARTS = {PROVENANCE_DIRNAME, "logs", "benchmarks"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def scrub_argv(argv: list[str]) -> str:
    """A command line safe to record: values of secret-looking options are replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if "=" in arg and SECRET_KEY.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
            continue
        if arg.startswith("-") and SECRET_KEY.search(arg):
            hide_next = True
        out.append(arg)
    return shlex.join(out)


def record_invocation(results_dir: str | Path, argv: list[str] | None = None) -> None:
    """Append the current Snakemake command line to ``provenance/invocations.tsv`` (onstart hook)."""
    path = Path(results_dir) / PROVENANCE_DIRNAME / "invocations.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = scrub_argv(list(argv if argv is not None else sys.argv)).replace("\t", " ")
    new = not path.exists()
    with open(path, "a") as fh:
        if new:
            fh.write("time_utc\tcwd\tcommand\n")
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\t{os.getcwd()}\t{line}\n")


def check_no_secrets(config, where: str = "config") -> None:
    """Refuse to record a config holding a key that looks like a credential."""
    if isinstance(config, dict):
        for key, value in config.items():
            if SECRET_KEY.search(str(key)) and value not in (None, "", False):
                raise ValueError(
                    f"{where}.{key} looks like a credential; credentials belong in the environment "
                    "(PHYSIONET_USERNAME/PHYSIONET_PASSWORD) or ~/.netrc, never in the config"
                )
            check_no_secrets(value, f"{where}.{key}")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_no_secrets(value, f"{where}[{i}]")


def package_versions() -> dict:
    dists = sorted(
        {(d.metadata["Name"] or "").lower(): d.version for d in importlib.metadata.distributions()}.items()
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": dict(dists),
    }


def git_state(repo: str | Path) -> dict:
    def git(*args):
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def _decode_record_path(rel_parts: tuple[str, ...]) -> str | None:
    """Invert Snakemake's FilePersistence._record_path (urlsafe base64, long ids split with '@')."""
    chunks = [p[1:] if p.startswith("@") else p for p in rel_parts]
    try:
        return base64.urlsafe_b64decode("".join(chunks).encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def snakemake_metadata(workdir: str | Path) -> dict[str, dict]:
    """Snakemake's per-output metadata records (rule, input, params, code) keyed by output path."""
    meta_dir = Path(workdir) / ".snakemake" / "metadata"
    records: dict[str, dict] = {}
    if not meta_dir.is_dir():
        return records
    for root, _dirs, files in os.walk(meta_dir):
        for name in files:
            full = Path(root) / name
            out = _decode_record_path(full.relative_to(meta_dir).parts)
            if out is None:
                continue
            try:
                records[os.path.normpath(out)] = json.loads(full.read_text())
            except (OSError, json.JSONDecodeError):
                continue
    return records


def _is_output_file(rel: Path) -> bool:
    if any(part in _SKIP_PARTS for part in rel.parts[:1]):
        return False
    name = rel.name
    return not (name.startswith(".") and name.endswith(".tmp"))


def collect_lineage(results_dir: str | Path, workdir: str | Path = ".") -> pd.DataFrame:
    """Every output file under ``results_dir`` with SHA-256, size, producing rule and inputs."""
    results_dir = Path(results_dir)
    workdir = Path(workdir)
    meta = snakemake_metadata(workdir)
    # outputs declared as directories: map each file inside to its directory's record
    dir_records = {k: v for k, v in meta.items() if (workdir / k).is_dir()}
    rows = []
    for path in sorted(p for p in results_dir.rglob("*") if p.is_file()):
        rel_results = path.relative_to(results_dir)
        if not _is_output_file(rel_results):
            continue
        key = os.path.normpath(os.path.relpath(path, workdir))
        record = meta.get(key)
        owner = key
        if record is None:
            for dkey, drec in dir_records.items():
                if key.startswith(dkey.rstrip("/") + "/"):
                    record, owner = drec, dkey
                    break
        record = record or {}
        params = record.get("params") or []
        rows.append(
            {
                "path": key,
                "sha256": sha256_file(path),
                "size": path.stat().st_size,
                "rule": record.get("rule"),
                "declared_output": owner if record else None,
                "inputs": sorted(os.path.normpath(i) for i in (record.get("input") or [])),
                "code_version": _code_version_param(params),
            }
        )
    return pd.DataFrame(
        rows, columns=["path", "sha256", "size", "rule", "declared_output", "inputs", "code_version"]
    )


def _code_version_param(params) -> str | None:
    """The code version among a rule's recorded params (Snakemake stores their repr)."""
    for p in params:
        if isinstance(p, str) and re.fullmatch(r"['\"]?[0-9a-f]{12}['\"]?", p):
            return p.strip("'\"")
    return None


def write_provenance(
    config: dict,
    results_dir: str | Path,
    raw_manifest: str | Path,
    repo: str | Path,
    workdir: str | Path = ".",
) -> dict:
    """Write the provenance bundle and audit it; returns the audit result."""
    results_dir = Path(results_dir)
    out = results_dir / PROVENANCE_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    check_no_secrets(config)
    with atomic_path(out / "config.resolved.yaml") as tmp:
        Path(tmp).write_text(yaml.safe_dump(config, sort_keys=True))
    write_json(package_versions(), out / "versions.json")
    write_json(git_state(repo), out / "git.json")
    manifest = pd.read_parquet(raw_manifest)
    write_parquet(manifest, out / "raw_manifest.parquet")
    write_parquet(collect_lineage(results_dir, workdir), out / "lineage.parquet")
    result = audit(results_dir, workdir=workdir)
    write_json(result, out / "audit.json")
    return result


def audit(results_dir: str | Path, workdir: str | Path = ".") -> dict:
    """Re-hash raw files and outputs recorded in ``provenance/``; name every change and gap.

    Raw files are found where the recorded (resolved) config says each dataset lives; relative
    paths are relative to ``workdir`` (the Snakemake working directory).
    """
    results_dir = Path(results_dir)
    workdir = Path(workdir)
    prov = results_dir / PROVENANCE_DIRNAME
    problems: list[dict] = []
    for required in ("lineage.parquet", "raw_manifest.parquet", "config.resolved.yaml"):
        if not (prov / required).exists():
            problems.append({"path": str(prov / required), "problem": "missing provenance file"})
    if problems:
        return {"ok": False, "checked_outputs": 0, "checked_raw": 0, "problems": problems}

    lineage = pd.read_parquet(prov / "lineage.parquet")
    manifest = pd.read_parquet(prov / "raw_manifest.parquet")
    config = yaml.safe_load((prov / "config.resolved.yaml").read_text())
    known: set[str] = set(lineage["path"])

    checked_raw = 0
    for row in manifest.itertuples(index=False):
        path = _raw_path(row, config, workdir)
        known.add(os.path.normpath(os.path.relpath(path, workdir)))
        checked_raw += 1
        if not path.exists():
            problems.append({"path": str(path), "problem": "raw file missing"})
        elif sha256_file(path) != row.sha256:
            problems.append({"path": str(path), "problem": "raw file changed (SHA-256 differs)"})

    for row in lineage.itertuples(index=False):
        path = workdir / row.path
        if not path.exists():
            problems.append({"path": row.path, "problem": "output missing"})
        elif sha256_file(path) != row.sha256:
            problems.append({"path": row.path, "problem": "output changed (SHA-256 differs)"})
        for inp in row.inputs:
            inp_norm = os.path.normpath(inp)
            if inp_norm in known or _under_known_dir(inp_norm, lineage) or _is_source_file(inp_norm, workdir):
                continue
            problems.append({"path": row.path, "problem": f"input {inp_norm} is not traced (not an output nor a raw file)"})
    return {
        "ok": not problems,
        "checked_outputs": int(len(lineage)),
        "checked_raw": int(checked_raw),
        "problems": problems,
    }


def _raw_path(row, config: dict, workdir: Path) -> Path:
    from instructx2x.acquire.sources import dataset_root

    path = dataset_root(config, row.dataset) / row.path
    return path if path.is_absolute() else workdir / path


def _under_known_dir(path: str, lineage: pd.DataFrame) -> bool:
    declared = set(d for d in lineage["declared_output"].dropna())
    return path in declared


def _is_source_file(path: str, workdir: Path) -> bool:
    """Inputs that are code or config of the repository (tracked by git / code versions)."""
    return not path.startswith("results") and (workdir / path).exists()


def main_audit(results_dir: str, workdir: str = ".") -> int:
    result = audit(results_dir, workdir=workdir)
    for problem in result["problems"]:
        print(f"AUDIT FAIL {problem['path']}: {problem['problem']}", file=sys.stderr)
    status = "OK" if result["ok"] else "FAILED"
    print(
        f"audit {status}: {result['checked_outputs']} outputs and {result['checked_raw']} raw files checked, "
        f"{len(result['problems'])} problem(s)"
    )
    return 0 if result["ok"] else 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="re-hash a results directory against its provenance and check the whole lineage",
        description="Re-hash every raw file and output recorded in RESULTS_DIR/provenance/ and check "
        "that every input of every output is traced. Exits 1 naming each changed or missing file.",
    )
    p.add_argument("results_dir", help="the pipeline's results directory (e.g. results)")
    p.add_argument("--workdir", default=".", help="the Snakemake working directory the paths are relative to")
    p.set_defaults(func=lambda a: main_audit(a.results_dir, a.workdir))
