"""The provenance bundle written by the ``provenance`` rule (``results/provenance/``).

- ``config.resolved.yaml``: the validated config with every default filled in (credentials never
  live in the config; keys that look secret are refused),
- ``versions.json``: Python, platform, the versions of every installed distribution,
- ``git.json``: commit, branch and whether the work tree was dirty,
- ``invocations.tsv``: the Snakemake command lines that ran in this results directory (``onstart``),
- ``raw_manifest.parquet``: every raw file with its SHA-256 (the acquisition's manifest) and where
  it is (``location``: relative to the results directory, or absolute),
- ``lineage.parquet``: a readable snapshot of the lineage store (one row per output file: digest,
  size, producing rule and job, its inputs and their digests, code version, config and package
  set); the store itself (``lineage/``) is what the audit reads,
- ``audit.json``: the audit, run by this rule before the report (which shows it).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from instructx2x.core.io import atomic_path, write_json, write_parquet
from instructx2x.provenance.auditing import audit
from instructx2x.provenance.store import SECRET_KEY, iter_files, load_headers, path_key

PROVENANCE_DIRNAME = "provenance"


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
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": dict(dists)}


def git_state(repo: str | Path) -> dict:
    def git(*args):
        res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


LINEAGE_SCHEMA = pa.schema([
    ("path", pa.string()), ("kind", pa.string()), ("of", pa.string()), ("sha256", pa.string()),
    ("size", pa.int64()), ("rule", pa.string()), ("job", pa.string()), ("finished_utc", pa.string()),
    ("code_version", pa.string()), ("config_sha256", pa.string()), ("packages_sha256", pa.string()),
    ("inputs", pa.list_(pa.string())), ("input_sha256", pa.list_(pa.string())),
])


def write_lineage_table(results_dir: str | Path, out_path: str | Path, skip_outputs: set[str] = frozenset()) -> int:
    """``lineage.parquet``: one row per recorded output (declared outputs and the files inside
    directories and manifests), written record by record (memory bounded by the largest job)."""
    headers = sorted(load_headers(results_dir), key=lambda h: (h["rule"], h["key"]))
    owner = {}
    for h in sorted(headers, key=lambda h: h.get("finished_ns", 0)):
        for o in h.get("outputs", []):
            owner[o["path"]] = h
    rows_written = 0
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, LINEAGE_SCHEMA, compression="zstd") as writer:
            for h in headers:
                mine = [o for o in h.get("outputs", []) if owner.get(o["path"]) is h and o["path"] not in skip_outputs]
                if not mine:
                    continue
                common = {
                    "rule": h["rule"], "job": h["key"], "finished_utc": h.get("finished_utc"),
                    "code_version": h.get("code_version"), "config_sha256": h.get("config_sha256"),
                    "packages_sha256": h.get("packages_sha256"),
                    "inputs": [i["path"] for i in h.get("inputs", [])],
                    "input_sha256": [i.get("sha256") for i in h.get("inputs", [])],
                }
                rows = [{"path": o["path"], "kind": o["kind"], "of": None, "sha256": o["sha256"],
                         "size": o.get("size"), **common} for o in mine]
                mine_keys = {o["path"] for o in mine}
                rows += [{"path": e["path"], "kind": "file", "of": e["of"], "sha256": e["sha256"],
                          "size": e["size"], **common} for e in iter_files(h) if e["of"] in mine_keys]
                writer.write_table(pa.Table.from_pylist(rows, schema=LINEAGE_SCHEMA))
                rows_written += len(rows)
    return rows_written


def write_provenance(config: dict, results_dir: str | Path, raw_manifest: str | Path, raw_roots: dict,
                     repo: str | Path, own_outputs: list[str] = (), raw_check: str = "size",
                     workers: int = 1) -> dict:
    """Write the provenance bundle and audit the results directory; returns the audit result.

    ``raw_roots``: {dataset: root directory} as the workflow resolves them; ``own_outputs``: this
    job's outputs (the audit leaves their old records aside and defers what was made from them);
    ``raw_check``: ``size`` by default here (the raw files were hashed when acquired, and at full
    scale re-hashing ~0.5 TB on every rerun of this rule is not affordable; ``instructx2x audit``
    re-hashes them).
    """
    results_dir = Path(results_dir)
    out = results_dir / PROVENANCE_DIRNAME
    out.mkdir(parents=True, exist_ok=True)
    check_no_secrets(config)
    with atomic_path(out / "config.resolved.yaml") as tmp:
        Path(tmp).write_text(yaml.safe_dump(config, sort_keys=True))
    write_json(package_versions(), out / "versions.json")
    write_json(git_state(repo), out / "git.json")
    manifest = pd.read_parquet(raw_manifest)
    manifest["location"] = [path_key(os.path.join(str(raw_roots[d]), p), results_dir)
                            for d, p in zip(manifest["dataset"], manifest["path"])]
    write_parquet(manifest, out / "raw_manifest.parquet")
    own = {path_key(p, results_dir) for p in own_outputs}
    write_lineage_table(results_dir, out / "lineage.parquet", skip_outputs=own)
    result = audit(results_dir, exclude=own, raw_check=raw_check, workers=workers)
    write_json(result, out / "audit.json")
    return result


def summary(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "problems"}, sort_keys=True)

