"""Provenance: every output traced to the job, inputs, code, config and packages that made it.

- ``store``: the lineage store. Each Snakemake job records itself when it succeeds (inputs it
  read, outputs it wrote, with SHA-256), through ``workflow_scripts/_job.py``; nothing else writes
  a job's record, so reruns never launder a file changed by hand.
- ``auditing``: re-hashes everything against the store (``instructx2x audit RESULTS_DIR``).
- ``bundle``: what the ``provenance`` rule writes (resolved config, versions, git, raw manifest,
  a lineage snapshot table, the audit).
- ``hashing``: file and directory digests.

Names are imported lazily: a job's hook (``store``, standard library only) must not pay for pandas.
"""

from importlib import import_module

_WHERE = {
    "AuditError": "auditing", "add_parser": "auditing", "audit": "auditing", "format_table": "auditing",
    "check_no_secrets": "bundle", "git_state": "bundle", "package_versions": "bundle",
    "record_invocation": "bundle", "scrub_argv": "bundle", "write_lineage_table": "bundle",
    "write_provenance": "bundle",
    "sha256_file": "hashing", "tree_digest": "hashing",
    "JobRecorder": "store", "load_headers": "store", "outputs_on_disk": "store", "record_script_job": "store",
    "write_file_manifest": "store",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
