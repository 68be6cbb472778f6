"""The audit: is every file of a results directory what the job that made it recorded?

``audit(results_dir)`` reads the job records of the lineage store (``provenance/lineage/``), takes
for each output the record of the job that made it last, and

- re-hashes every recorded output (files inside directory outputs and manifests one by one) and
  compares it with the digest its job recorded: **changed** or **missing**;
- checks each job against the inputs it was made from: the digest the job read must be the digest
  the lineage holds for that input now (else the input was changed before the job read it, or
  re-made after it and the job is out of date), a raw input must match the raw manifest, an input
  outside the results directory must still hash as it did;
- re-hashes the raw files of ``provenance/raw_manifest.parquet`` (or checks their sizes);
- names every file under the results directory that no job record accounts for (logs, benchmarks
  and the store itself aside): **not in the lineage**.

Nothing is re-recorded by an audit or by any rule other than the one that made a file, so a file
changed by hand is reported whatever runs later, until its own rule re-makes it.

``instructx2x audit RESULTS_DIR [--json]`` prints a verdict and a table of problems (file, what,
expected and found SHA-256, producing rule, when it ran); exit status 0 clean, 1 problems, 2 the
directory cannot be audited (missing, or no lineage).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from instructx2x.core.errors import InputError
from instructx2x.provenance.hashing import hash_tree, is_transient, sha256_file, tree_digest, walk_files
from instructx2x.provenance.store import STORE, iter_files, key_path, load_headers

RAW_CHECKS = ("hash", "size", "skip")
# top-level parts of the results directory that are not pipeline outputs
NOT_OUTPUTS = ("logs", "benchmarks")
NOT_OUTPUT_FILES = ("provenance/invocations.tsv",)


class AuditError(InputError):
    """The directory cannot be audited (it does not exist, or holds no lineage)."""


def _problem(path, problem, expected=None, found=None, rule=None, when=None) -> dict:
    return {"path": path, "problem": problem, "expected": expected, "found": found, "rule": rule, "when": when}


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def audit(results_dir: str | Path, *, exclude: tuple[str, ...] | set[str] = (), raw_check: str = "hash",
          workers: int = 1) -> dict:
    """Audit ``results_dir`` against its lineage store; returns the verdict and the problems.

    ``exclude``: output keys being re-made by the calling job (the ``provenance`` rule audits
    before its own outputs are written): the records that made them are not checked, and the
    records made *from* them (the report) are deferred: they are re-made after this audit.
    """
    if raw_check not in RAW_CHECKS:
        raise ValueError(f"raw_check must be one of {RAW_CHECKS}")
    results = Path(results_dir)
    if not results.is_dir():
        raise AuditError(f"cannot audit {results_dir}: no such directory")
    headers = load_headers(results)
    if not headers:
        raise AuditError(f"cannot audit {results_dir}: no lineage ({results / STORE / 'jobs'} holds no job "
                         "records; not a results directory of this pipeline, or made before lineage was recorded)")
    exclude = set(exclude)
    t0 = time.time()

    # the record that made each output last owns it
    owner: dict[str, dict] = {}
    out_entry: dict[str, dict] = {}
    for header in sorted(headers, key=lambda h: h.get("finished_ns", 0)):
        for out in header.get("outputs", []):
            owner[out["path"]] = header
            out_entry[out["path"]] = out
    active = [h for h in headers if any(owner.get(o["path"]) is h for o in h.get("outputs", []))]
    superseded = len(headers) - len(active)
    excluded = [h for h in active if any(o["path"] in exclude for o in h.get("outputs", []))]
    deferred = [h for h in active if h not in excluded and any(i["path"] in exclude for i in h.get("inputs", []))]
    checked = [h for h in active if h not in excluded and h not in deferred]

    raw = _load_raw_manifest(results)
    problems: list[dict] = []
    known_files: set[str] = set(exclude)      # keys accounted for (files and declared outputs)
    covered_dirs: set[str] = set()            # directory outputs whose content was checked file by file
    for h in excluded + deferred:
        dirs = {o["path"] for o in h.get("outputs", []) if o.get("kind") == "dir"}
        covered_dirs |= dirs
        known_files.update(o["path"] for o in h.get("outputs", []))
        known_files.update(e["path"] for e in _files(h, problems) if e["of"] not in dirs)  # manifest-listed

    pool = ThreadPoolExecutor(max(1, int(workers)))
    n_outputs = 0
    try:
        for h in checked:
            rule, when = h["rule"], h.get("finished_utc")
            mine = [o for o in h.get("outputs", []) if owner.get(o["path"]) is h]
            files = [e for e in _files(h, problems) if owner.get(e["of"]) is h]
            # declared file outputs and manifests
            singles = [o for o in mine if o.get("kind") != "dir"]
            found = pool.map(lambda o: _hash_or_none(key_path(o["path"], results)), singles)
            for o, sha in zip(singles, found):
                known_files.add(o["path"])
                n_outputs += 1
                if sha is None:
                    problems.append(_problem(o["path"], "missing", o["sha256"], None, rule, when))
                elif sha != o["sha256"]:
                    problems.append(_problem(o["path"], "changed since its rule made it", o["sha256"], sha, rule, when))
            # files inside directory outputs and listed by manifests
            found = pool.map(lambda e: _hash_or_none(key_path(e["path"], results)), files)
            dir_keys = {o["path"] for o in mine if o.get("kind") == "dir"}
            for e, sha in zip(files, found):
                if e["of"] not in dir_keys:  # files inside directories are skipped by the walk as a whole
                    known_files.add(e["path"])
                n_outputs += 1
                if sha is None:
                    problems.append(_problem(e["path"], "missing", e["sha256"], None, rule, when))
                elif sha != e["sha256"]:
                    problems.append(_problem(e["path"], "changed since its rule made it", e["sha256"], sha, rule, when))
            # directory outputs: the directory itself, and files added to it after the job
            for o in (o for o in mine if o.get("kind") == "dir"):
                known_files.add(o["path"])
                covered_dirs.add(o["path"])
                d = key_path(o["path"], results)
                if not d.is_dir():
                    if not o.get("files"):
                        problems.append(_problem(o["path"], "missing (directory)", o["sha256"], None, rule, when))
                    continue
                listed = {e["path"] for e in files if e["of"] == o["path"]}
                for rel in walk_files(d):
                    key = f"{o['path']}/{rel}"
                    if key not in listed:
                        problems.append(_problem(key, f"not in the lineage: added to {o['path']} after {rule} made it",
                                                 None, _hash_or_none(d / rel), rule, when))
            problems += _check_inputs(h, owner, out_entry, raw, results)
        n_raw = _check_raw(raw, results, raw_check, known_files, problems, pool)
    finally:
        pool.shutdown()
    problems += _unrecorded(results, known_files, covered_dirs, raw)

    problems.sort(key=lambda p: (p["path"], p["problem"]))
    return {
        "ok": not problems,
        "verdict": "PASSED" if not problems else "FAILED",
        "results_dir": str(results_dir),
        "audited_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 2),
        "checked_jobs": len(checked),
        "checked_outputs": n_outputs,
        "checked_raw": n_raw,
        "raw_check": raw_check,
        "superseded_records": superseded,
        "deferred": sorted(f"{h['rule']}[{h['key']}]" for h in deferred),
        "problems": problems,
    }


def _files(h: dict, problems: list) -> list[dict]:
    """The per-file entries of a record; a record whose file list is gone is itself a problem."""
    try:
        return list(iter_files(h))
    except FileNotFoundError:
        problems.append(_problem(str(Path(h["_path"]).with_name(h["files"])), "the file list of this job record is "
                                 "missing: the files inside its directory outputs cannot be checked", None, None,
                                 h["rule"], h.get("finished_utc")))
        return []


def _check_inputs(h: dict, owner: dict, out_entry: dict, raw: dict, results: Path) -> list[dict]:
    """Was the job made from the inputs the lineage holds now?"""
    problems = []
    rule, when = h["rule"], h.get("finished_utc")
    first = next((o["path"] for o in h.get("outputs", [])), h["rule"])
    for inp in h.get("inputs", []):
        key, read = inp["path"], inp.get("sha256")
        if key in out_entry:
            now = out_entry[key]["sha256"]
            if read != now:
                made_by = owner[key]
                problems.append(_problem(
                    first, f"made from another version of {key} than the lineage holds "
                           f"({made_by['rule']} made it at {made_by.get('finished_utc')}): the input changed "
                           "before this job read it, or this job is out of date", now, read, rule, when))
        elif key in raw:
            if read != raw[key]["sha256"]:
                problems.append(_problem(first, f"made from raw file {key} whose SHA-256 differs from the raw manifest",
                                         raw[key]["sha256"], read, rule, when))
        elif os.path.isabs(key):
            path = Path(key)
            now = hash_tree(path)[0] if path.is_dir() else _hash_or_none(path)
            if now != read:
                problems.append(_problem(key, f"input of {rule} (outside the results directory) changed or "
                                              "missing since the job read it", read, now, rule, when))
        else:
            problems.append(_problem(first, f"input {key} is not traced: no job record made it and it is not "
                                            "a raw file", read, None, rule, when))
    return problems


def _load_raw_manifest(results: Path) -> dict[str, dict]:
    """{location key: manifest row} from provenance/raw_manifest.parquet (written by the provenance rule)."""
    path = results / "provenance" / "raw_manifest.parquet"
    if not path.exists():
        return {}
    import pandas as pd

    df = pd.read_parquet(path)
    if "location" not in df.columns:
        return {}
    return {row["location"]: {"sha256": row["sha256"], "size": row.get("size")}
            for row in df[["location", "sha256", "size"]].to_dict("records")}


def _check_raw(raw: dict, results: Path, raw_check: str, known: set, problems: list, pool) -> int:
    todo = [(k, v) for k, v in raw.items() if k not in known and v.get("sha256") is not None]
    if raw_check == "skip":
        return 0
    if raw_check == "size":
        found = [(k, v, os.path.getsize(key_path(k, results)) if key_path(k, results).is_file() else None)
                 for k, v in todo]
        for k, v, size in found:
            if size is None:
                problems.append(_problem(k, "raw file missing", v["sha256"], None, "acquisition", None))
            elif v.get("size") is not None and int(v["size"]) != size:
                problems.append(_problem(k, f"raw file changed (size {size}, manifest {v['size']})", v["sha256"],
                                         None, "acquisition", None))
    else:
        for (k, v), sha in zip(todo, pool.map(lambda kv: _hash_or_none(key_path(kv[0], results)), todo)):
            if sha is None:
                problems.append(_problem(k, "raw file missing", v["sha256"], None, "acquisition", None))
            elif sha != v["sha256"]:
                problems.append(_problem(k, "raw file changed (SHA-256 differs from the raw manifest)", v["sha256"],
                                         sha, "acquisition", None))
    known.update(k for k, _ in todo)
    return len(todo)


def _unrecorded(results: Path, known: set, covered_dirs: set, raw: dict) -> list[dict]:
    """Files under the results directory that no record accounts for."""
    raw_dirs = {str(Path(k).parent) for k in raw if not os.path.isabs(k)}
    raw_roots = _roots(raw_dirs)
    skip_dirs = set(NOT_OUTPUTS) | {STORE.as_posix()} | covered_dirs
    problems = []
    for root, dirs, files in os.walk(results):
        rel_root = Path(root).relative_to(results).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(d for d in dirs if f"{rel_root}{d}" not in skip_dirs
                         and not any(f"{rel_root}{d}" == r or f"{rel_root}{d}".startswith(r + "/") for r in raw_roots))
        for name in sorted(files):
            key = f"{rel_root}{name}"
            if is_transient(name) or key in known or key in NOT_OUTPUT_FILES:
                continue
            problems.append(_problem(key, "not in the lineage: no job record made it", None,
                                     _hash_or_none(results / key), None, None))
    return problems


def _roots(dirs: set[str]) -> list[str]:
    """The shortest directories of a set (one per subtree)."""
    roots: list[str] = []
    for d in sorted(dirs, key=len):
        if not any(d == r or d.startswith(r + "/") for r in roots):
            roots.append(d)
    return roots


# --- the command ------------------------------------------------------------------------------

def format_table(result: dict, shown_root: str) -> str:
    """The verdict line and, when there are problems, a fixed-width table of them."""
    prefix = shown_root.rstrip("/") + "/"
    verdict = (f"audit {result['verdict']}: {len(result['problems'])} problem(s); "
               f"{result['checked_outputs']} outputs of {result['checked_jobs']} jobs and "
               f"{result['checked_raw']} raw files checked ({result['raw_check']}) in {shown_root}")
    lines = [verdict]
    if result.get("deferred"):
        lines.append(f"deferred (made from files this audit replaces): {', '.join(result['deferred'])}")
    if not result["problems"]:
        return "\n".join(lines)

    def short(sha):
        return "-" if sha is None else str(sha)[:12]

    rows = [("file", "expected", "found", "rule", "when", "problem")]
    for p in result["problems"]:
        path = p["path"] if os.path.isabs(p["path"]) else prefix + p["path"]
        rows.append((path, short(p["expected"]), short(p["found"]), p["rule"] or "-", p["when"] or "-", p["problem"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[5]]))
    return "\n".join(lines)


def main_audit(results_dir: str, as_json: bool = False, raw_check: str = "hash", workers: int = 1) -> int:
    result = audit(results_dir, raw_check=raw_check, workers=workers)
    if as_json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(format_table(result, results_dir))
    return 0 if result["ok"] else 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="check every file of a results directory against the lineage its jobs recorded",
        description="Re-hash every output recorded in RESULTS_DIR/provenance/lineage/ (and the raw files of "
        "the raw manifest), check each job against the inputs it was made from and name every file no job "
        "made. Exit status: 0 clean, 1 problems found, 2 the directory cannot be audited.",
    )
    p.add_argument("results_dir", help="the pipeline's results directory (e.g. results)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON (for scripts)")
    p.add_argument("--raw", choices=RAW_CHECKS, default="hash",
                   help="raw files: re-hash them (default), check only their sizes, or skip them")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="hashing threads")
    p.set_defaults(func=lambda a: main_audit(a.results_dir, a.json, a.raw, a.workers))
