# Ingest: validate the raw tables of the five datasets against schemas/tables/raw_*.schema.yaml and
# write the typed tables of docs/interfaces.md under results/tables/.
from instructx2x.ingest import RAW_SCHEMAS as INGEST_RAW_SCHEMAS, TABLES as INGEST_TABLES
from instructx2x.core.tableschema import schemas_version

INGEST_OUTPUTS = [results(f"tables/{name}.parquet") for name in INGEST_TABLES]


rule ingest:
    input:
        manifest=RAW_MANIFEST,
    output:
        tables=INGEST_OUTPUTS,
        ledger=results("ledger/ingest.tsv"),
        counts=results("ledger/ingest.counts.tsv"),
    params:
        code=code_version("ingest", "core.tableschema", "acquire.sources"),
        schemas=schemas_version(INGEST_RAW_SCHEMAS + INGEST_TABLES),
        out_dir=lambda wildcards, output: str(Path(output.tables[0]).parent),
    log:
        f"{LOGS}/ingest.log",
    benchmark:
        f"{BENCH}/ingest.tsv"
    conda:
        "../envs/acquire.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    script:
        "../workflow_scripts/ingest_tables.py"


ALL_TARGETS.extend(INGEST_OUTPUTS)
LEDGERS.append(results("ledger/ingest.tsv"))
