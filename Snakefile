# instructx2x: the whole pipeline as one DAG. Thin by design: configuration, validation,
# includes and the final target. Every rule lives in rules/<stage>.smk; every computation in
# src/instructx2x/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/acquire.smk"
include: "rules/demo.smk"
include: "rules/ingest.smk"
include: "rules/views.smk"
include: "rules/pairs.smk"
include: "rules/registration.smk"
include: "rules/instructions.smk"
include: "rules/training.smk"
include: "rules/masks.smk"
include: "rules/inference.smk"
include: "rules/provenance.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
