"""The lineage store: one record per Snakemake job, written by the job itself when it succeeds.

Every workflow script imports ``workflow_scripts/_job.py`` first, which calls
:func:`record_script_job`. That hashes the job's declared inputs when the script starts and, when
the script ends without an error, hashes its outputs and writes the job's record to
``<results>/provenance/lineage/jobs/<rule>/<wildcards>.json``:

- rule, wildcards, start and end time (UTC), host, working directory,
- the code version (the rule's ``code`` param) and every other param,
- the SHA-256 of the resolved config and of the installed packages (each stored once under
  ``lineage/configs/`` and ``lineage/packages/``),
- each declared input with the digest the job read (a file's SHA-256; a directory's tree digest),
- each declared output with its digest, size and modification time.

Files inside directory outputs, and files listed by a ``*.manifest.json`` output (see
:func:`write_file_manifest`), are listed one per line in a TSV beside the record. A rerun of the
same job replaces its record; nothing else ever writes it, so a file changed by hand after its job
ran keeps the old digest in the lineage whatever runs later, until its own rule re-makes it.

Paths are stored as *keys*: relative to the results directory for files under it (so a copied or
moved results directory still audits), absolute for anything outside (raw data of ``source:
local``, an external pretrained model).

Only the standard library is used: a job imports this in whatever environment it runs in.
"""

from __future__ import annotations

import ast
import atexit
import hashlib
import importlib.metadata
import json
import os
import re
import socket
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import quote

from instructx2x.provenance.hashing import hash_tree, sha256_file, tree_digest, walk_files

FORMAT = 1
STORE = Path("provenance") / "lineage"   # under the results directory
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_KIND = "instructx2x.file-manifest"
ON_DISK_PREFIX = "on disk: "
ON_DISK_INTACT = ON_DISK_PREFIX + "as made"
SECRET_KEY = re.compile(r"(pass(word)?|secret|token|credential)", re.IGNORECASE)
TSV_COLUMNS = ("path", "sha256", "size", "mtime_ns", "of")


# --- keys and locations -----------------------------------------------------------------------

def store_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / STORE


def path_key(path: str | Path, results_dir: str | Path, cwd: str | Path | None = None) -> str:
    """``model/pipeline`` for a path under the results directory, the absolute path otherwise."""
    cwd = str(cwd or os.getcwd())
    full = os.path.normpath(os.path.join(cwd, str(path)))
    root = os.path.normpath(os.path.join(cwd, str(results_dir)))
    if full == root:
        return "."
    if full.startswith(root + os.sep):
        return os.path.relpath(full, root).replace(os.sep, "/")
    return full


def key_path(key: str, results_dir: str | Path) -> Path:
    """Where the file of a key is, for the results directory at ``results_dir``."""
    return Path(key) if os.path.isabs(key) else Path(results_dir) / key


def job_key(wildcards: dict) -> str:
    """File name of a job's record: ``all`` for a rule without wildcards, else ``shard=0`` etc."""
    if not wildcards:
        return "all"
    return ",".join(f"{k}={quote(str(v), safe='')}" for k, v in sorted(wildcards.items()))


def record_path(results_dir: str | Path, rule: str, key: str) -> Path:
    return store_dir(results_dir) / "jobs" / rule / f"{key}.json"


# --- reading ----------------------------------------------------------------------------------

def read_header(path: str | Path) -> dict | None:
    try:
        header = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    header["_path"] = str(path)
    return header


def load_headers(results_dir: str | Path) -> list[dict]:
    """Every job record of the store (headers only; files inside directories via iter_files)."""
    jobs = store_dir(results_dir) / "jobs"
    if not jobs.is_dir():
        return []
    headers = []
    for path in sorted(jobs.glob("*/*.json")):
        header = read_header(path)
        if header is not None:
            headers.append(header)
    return headers


def iter_files(header: dict):
    """The per-file entries of a record (files inside its directory outputs and manifests)."""
    name = header.get("files")
    if not name:
        return
    path = Path(header["_path"]).parent / name
    with open(path) as fh:
        columns = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            values = line.rstrip("\n").split("\t")
            entry = dict(zip(columns, values))
            entry["size"] = int(entry["size"])
            entry["mtime_ns"] = int(entry["mtime_ns"])
            yield entry


# --- the param that makes Snakemake re-make a job whose directory output lost a file ------------

def outputs_on_disk(results_dir: str | Path, rule: str, wildcards, recorded_params=None) -> str:
    """A rule param (``on_disk=on_disk("infer")`` in the rules; see rules/common.smk).

    Snakemake never looks inside a directory output, so deleting one edited image would leave the
    job "up to date". This value stays what Snakemake recorded for the job's last run (its
    metadata, read through ``recorded_params(output path)``) while every file the job's lineage
    record lists inside its directory outputs is there; when one is missing it changes, so
    Snakemake re-runs the job ("params changed"), and once the job has re-made its files the value
    is again the recorded one: no rerun loop. (The value the job itself receives is evaluated after
    Snakemake deleted its outputs, which is why the record of Snakemake, not the job's own, is
    the reference.) Reading one record and listing the directories hashes nothing.
    """
    header = read_header(record_path(results_dir, rule, job_key(dict(wildcards.items()))))
    if header is None:
        return ON_DISK_INTACT
    dirs = [o["path"] for o in header.get("outputs", []) if o.get("kind") == "dir"]
    if not dirs:
        return ON_DISK_INTACT
    before = ON_DISK_INTACT
    for value in (recorded_params(os.path.join(str(results_dir), dirs[0])) if recorded_params else None) or []:
        try:
            value = ast.literal_eval(value) if isinstance(value, str) else value
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, str) and value.startswith(ON_DISK_PREFIX):
            before = value
    present = {d: set(walk_files(key_path(d, results_dir))) if key_path(d, results_dir).is_dir() else set()
               for d in dirs}
    try:
        missing = [e["path"] for e in iter_files(header)
                   if e["of"] in present and e["path"][len(e["of"]) + 1:] not in present[e["of"]]]
    except FileNotFoundError:  # the record's file list is gone (the audit names that): nothing to compare
        missing = []
    if not missing:
        return before
    tag = hashlib.sha256(before.encode()).hexdigest()[:12]
    return f"{ON_DISK_PREFIX}{len(missing)} file(s) of the job's lineage missing, e.g. {missing[0]} (after {tag})"


def on_disk_param(workflow, results_dir: str, rule: str):
    """The ``on_disk`` param for a rule of ``workflow`` (the Snakefile's ``workflow`` object)."""

    def recorded_params(path):  # what Snakemake recorded for the job's last run (None: nothing yet)
        from snakemake.io import IOFile

        persistence = workflow.persistence  # None until Snakemake sets it up for the DAG
        return persistence.params(IOFile(path)) if persistence is not None else None

    return lambda wildcards: outputs_on_disk(results_dir, rule, wildcards, recorded_params)


# --- manifests: outputs that stand for files Snakemake must not own ----------------------------

def write_file_manifest(directory: str | Path, manifest_path: str | Path) -> dict:
    """List every file under ``directory`` with its SHA-256 in ``manifest_path`` (a declared output).

    For files a job writes but that cannot be a Snakemake output (checkpoints: Snakemake deletes a
    job's outputs before it runs, which would end resuming), the manifest is the output; the job's
    record then lists the files with their digests and the audit checks them.
    """
    digest, entries = hash_tree(directory) if Path(directory).is_dir() else (tree_digest([]), [])
    manifest = {"kind": MANIFEST_KIND, "format": FORMAT, "directory": str(directory),
                "tree_sha256": digest, "files": entries}
    _write_atomic(Path(manifest_path), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


# --- writing ----------------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _jsonable(value):
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _redact(value):
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "", False) else _redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def package_set() -> dict:
    return {"python": sys.version.split()[0],
            "packages": dict(sorted({(d.metadata["Name"] or "").lower(): d.version
                                     for d in importlib.metadata.distributions()}.items()))}


def _store_blob(results_dir: str | Path, kind: str, obj) -> str:
    """Store a JSON object once under ``lineage/<kind>/<sha>.json``; returns its SHA-256."""
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    sha = hashlib.sha256(text.encode()).hexdigest()
    path = store_dir(results_dir) / kind / f"{sha[:16]}.json"
    if not path.exists():
        _write_atomic(path, text)
    return sha


def _named(namedlist) -> dict[int, str]:
    """{position: name} of a Snakemake named list (input, output)."""
    names = {}
    for name, span in (getattr(namedlist, "_names", None) or {}).items():
        start, end = span if isinstance(span, tuple) else (span, span + 1)
        for i in range(start, end if end is not None else start + 1):
            names[i] = name
    return names


def _params(params) -> dict:
    """A rule's params by name (unnamed ones as ``#<position>``), JSON-safe."""
    items = params._allitems() if hasattr(params, "_allitems") else ((None, v) for v in params)
    return _jsonable({name if name is not None else f"#{i}": value for i, (name, value) in enumerate(items)})


class JobRecorder:
    """Records one job: inputs when constructed (``start``), outputs and the record at ``finish``."""

    def __init__(self, *, rule: str, wildcards: dict, inputs: list[str], outputs: list[str], params: dict,
                 config: dict, results_dir: str | None = None, input_names: dict | None = None,
                 output_names: dict | None = None):
        self.rule = rule
        self.wildcards = {k: str(v) for k, v in wildcards.items()}
        self.input_paths = [str(p) for p in inputs]
        self.output_paths = [str(p) for p in outputs]
        self.input_names = input_names or {}
        self.output_names = output_names or {}
        self.params = params
        self.config = config
        self.results_dir = str(results_dir if results_dir is not None else config["results_dir"])
        self.cwd = os.getcwd()
        self.key = job_key(self.wildcards)
        self.started_ns = None
        self.inputs: list[dict] = []

    @classmethod
    def from_snakemake(cls, smk) -> "JobRecorder":
        return cls(rule=smk.rule, wildcards=dict(smk.wildcards.items()), inputs=list(smk.input),
                   outputs=list(smk.output), params=_params(smk.params), config=dict(smk.config),
                   input_names=_named(smk.input), output_names=_named(smk.output))

    def _key(self, path: str) -> str:
        return path_key(path, self.results_dir, self.cwd)

    # -- inputs ---------------------------------------------------------------------------------
    def _known_outputs(self) -> tuple[dict, dict]:
        """Digests the lineage already holds: {key: output entry}, {key: record header} of producers."""
        outputs, owners = {}, {}
        for header in sorted(load_headers(self.results_dir), key=lambda h: h.get("finished_ns", 0)):
            for out in header.get("outputs", []):
                outputs[out["path"]] = out
                owners[out["path"]] = header
        return outputs, owners

    def start(self) -> "JobRecorder":
        """Hash the declared inputs as the job finds them.

        A file whose size and modification time equal those its producing job recorded is taken
        with the recorded digest (like ``git status``; the audit re-hashes everything anyway), so a
        job reading a 4 GB model or 100,000 aligned images does not read them twice.
        """
        self.started_ns = time.time_ns()
        outputs, owners = self._known_outputs()
        seen = set()
        for i, path in enumerate(self.input_paths):
            key = self._key(path)
            if key in seen:
                continue
            seen.add(key)
            entry = {"path": key, "name": self.input_names.get(i)}
            known = outputs.get(key)
            if os.path.isdir(path):
                by_rel = {}
                if known is not None and known.get("kind") == "dir":
                    prefix = key + "/"
                    try:
                        by_rel = {e["path"][len(prefix):]: e for e in iter_files(owners[key]) if e["of"] == key}
                    except FileNotFoundError:  # the producer's file list is gone: hash everything
                        by_rel = {}

                def reuse(rel, size, mtime_ns, by_rel=by_rel):
                    e = by_rel.get(rel)
                    return e["sha256"] if e and e["size"] == size and e["mtime_ns"] == mtime_ns else None

                digest, files = hash_tree(path, reuse)
                entry.update(kind="dir", sha256=digest, files=len(files))
            elif os.path.exists(path):
                st = os.stat(path)
                if known is not None and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
                    sha = known["sha256"]
                else:
                    sha = sha256_file(path)
                entry.update(kind="file", sha256=sha, size=st.st_size)
            else:
                entry.update(kind="missing", sha256=None)
            self.inputs.append(entry)
        return self

    # -- outputs --------------------------------------------------------------------------------
    def outputs_complete(self) -> bool:
        return all(os.path.exists(p) for p in self.output_paths)

    def finish(self) -> Path:
        """Hash the outputs and write the record (the TSV of files first, the header last)."""
        finished_ns = time.time_ns()
        outputs, files = [], []
        for i, path in enumerate(self.output_paths):
            key = self._key(path)
            entry = {"path": key, "name": self.output_names.get(i)}
            if os.path.isdir(path):
                digest, entries = hash_tree(path)
                entry.update(kind="dir", sha256=digest, files=len(entries))
                files += [{**e, "path": f"{key}/{e['rel']}", "of": key} for e in entries]
            else:
                st = os.stat(path)
                entry.update(kind="file", sha256=sha256_file(path), size=st.st_size, mtime_ns=st.st_mtime_ns)
                if path.endswith(MANIFEST_SUFFIX):
                    manifest = json.loads(Path(path).read_text())
                    if manifest.get("kind") == MANIFEST_KIND:
                        entry["kind"] = "manifest"
                        root = manifest["directory"]
                        files += [{**e, "path": self._key(os.path.join(root, e["rel"])), "of": key}
                                  for e in manifest["files"]]
            outputs.append(entry)

        config_sha = _store_blob(self.results_dir, "configs", _redact(_jsonable(self.config)))
        packages_sha = _store_blob(self.results_dir, "packages", package_set())
        rpath = record_path(self.results_dir, self.rule, self.key)
        files_name = None
        if files:
            files_name = f"{self.key}.{finished_ns}.files.tsv"
            lines = ["\t".join(TSV_COLUMNS)]
            lines += ["\t".join(str(f[c]) for c in TSV_COLUMNS) for f in files]
            _write_atomic(rpath.parent / files_name, "\n".join(lines) + "\n")
        header = {
            "format": FORMAT,
            "rule": self.rule,
            "wildcards": self.wildcards,
            "key": self.key,
            "started_utc": _utc(self.started_ns or finished_ns),
            "finished_utc": _utc(finished_ns),
            "finished_ns": finished_ns,
            "host": socket.gethostname(),
            "cwd": self.cwd,
            "results_dir": self.results_dir,
            "code_version": self.params.get("code"),
            "params": _redact(self.params),
            "config_sha256": config_sha,
            "packages_sha256": packages_sha,
            "inputs": self.inputs,
            "outputs": outputs,
            "files": files_name,
            "n_files": len(files),
        }
        _write_atomic(rpath, json.dumps(header, indent=1, sort_keys=True) + "\n")
        # the previous run's file list of this job is replaced
        for old in rpath.parent.glob(f"{self.key}.*.files.tsv"):
            if old.name != files_name:
                old.unlink(missing_ok=True)
        return rpath


# --- the hook of workflow scripts -------------------------------------------------------------

def is_rank_zero() -> bool:
    """False in the extra processes of a multi-process job (DDP ranks, srun tasks): one record per job."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value not in (None, "", "0"):
            return False
    return True


def record_script_job(smk=None) -> JobRecorder | None:
    """Record the Snakemake job running this script (called by ``workflow_scripts/_job.py``).

    Inputs are hashed now; at interpreter exit, when the script raised no exception and every
    declared output exists, the outputs are hashed and the record written. A record that cannot be
    written fails the job (exit status 1): a job without lineage would be a hole.
    """
    if smk is None:
        import __main__

        smk = getattr(__main__, "snakemake", None)
    if smk is None or not is_rank_zero():
        return None
    recorder = JobRecorder.from_snakemake(smk).start()

    def at_exit():
        # an uncaught exception sets sys.last_type before any excepthook (a script may install its
        # own) and before exit handlers run: then the job failed and nothing is recorded
        if getattr(sys, "last_type", None) is not None or not recorder.outputs_complete():
            return
        try:
            recorder.finish()
        except BaseException:  # noqa: BLE001  (reported, then the job fails)
            traceback.print_exc()
            print(f"error: the lineage record of job {recorder.rule} [{recorder.key}] could not be written",
                  file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)

    atexit.register(at_exit)
    return recorder
