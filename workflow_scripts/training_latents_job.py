"""Rule `training_latents_job`: one job's shards of the latent cache (resumes after its finished shards)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys
from pathlib import Path

import torch

from instructx2x.core.io import write_json
from instructx2x.provenance.store import write_file_manifest
from instructx2x.training.latents import encode_job

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821  (oversubscribed CPU threads are many times slower)

p = snakemake.params  # noqa: F821
manifest = encode_job(snakemake.input.instructions, snakemake.input.init, p.work_dir,  # noqa: F821
                      splits=list(p.splits), copies=int(p.copies), resolution=int(p.resolution), seed=int(p.seed),
                      aug=dict(p.augment), job=int(snakemake.wildcards.job), jobs=int(p.jobs),  # noqa: F821
                      shard_pairs=int(p.shard_pairs), batch=int(p.batch), num_workers=int(p.workers),
                      settings={"code": p.code})
write_json(manifest, snakemake.output.manifest)  # noqa: F821
# the job's shard directory (resume state, not an output) listed with SHA-256 for the lineage
write_file_manifest(Path(p.work_dir) / f"job_{int(snakemake.wildcards.job):03d}", snakemake.output.files)  # noqa: F821
