# Instructions (method §5-6): every difference answer parsed into operations once (independent of
# registration); a cheap join with the registration gate's accepted pairs assigns patient-wise
# splits and writes MIMIC-EDIT-INSTRUCTION and Table 1.
INSTR = config["instructions"]
INSTRUCTIONS = results("instructions/instructions.parquet")
INSTR_OPERATIONS = results("instructions/operations.parquet")
INSTR_TABLE1 = [results("instructions/table1.csv"), results("instructions/table1.md")]


rule instructions_operations:
    input:
        vqa=results("tables/vqa.parquet"),
        diseases=results("tables/diseases.parquet"),
        reports=results("tables/reports.parquet"),
    output:
        operations=INSTR_OPERATIONS,
        ledger=results("ledger/instructions.tsv"),
        counts=results("ledger/instructions.counts.tsv"),
    params:
        code=code_version("instructions"),
        settings={k: INSTR[k] for k in ("use_keyinfo", "use_questions", "use_reports")},
    log:
        f"{LOGS}/instructions_operations.log",
    benchmark:
        f"{BENCH}/instructions_operations.tsv"
    conda:
        "../envs/preprocess.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 30 * attempt,
    script:
        "../workflow_scripts/instructions_operations.py"


rule instructions_build:
    input:
        operations=INSTR_OPERATIONS,
        accepted=results("registration/accepted_pairs.parquet"),
        pairs=results("pairs/pairs.parquet"),
        studies=results("tables/studies.parquet"),
    output:
        instructions=INSTRUCTIONS,
        table1_csv=INSTR_TABLE1[0],
        table1_md=INSTR_TABLE1[1],
        ledger=results("ledger/instructions_join.tsv"),
        counts=results("ledger/instructions_join.counts.tsv"),
    params:
        code=code_version("instructions.build", "instructions.splits", "instructions.table1"),
        split_settings={"fractions": INSTR["fractions"], "holdout_folder": INSTR["holdout_folder"]},
        seed=INSTR["split_seed"] if INSTR["split_seed"] is not None else config["seed"],
    log:
        f"{LOGS}/instructions_build.log",
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 20 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/instructions_build.py"


rule instructions_export:
    input:
        instructions=INSTRUCTIONS,
    output:
        directory(results("instructions/authors")),
    params:
        code=code_version("instructions.build"),
        on_disk=on_disk("instructions_export"),  # a file deleted from authors/ re-runs this job
    log:
        f"{LOGS}/instructions_export.log",
    resources:
        mem_mb=2000,
        runtime=lambda wildcards, attempt: 30 * attempt,
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/instructions_export.py"


ALL_TARGETS.extend([INSTRUCTIONS, *INSTR_TABLE1])
if INSTR["export_authors_layout"]:
    ALL_TARGETS.append(results("instructions/authors"))
LEDGERS.extend([results("ledger/instructions.tsv"), results("ledger/instructions_join.tsv")])
