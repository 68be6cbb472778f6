"""Stage ``ingest`` (``rules/ingest.smk``): the raw tables of the five datasets, validated, as typed parquet.

- ``tables``: read and check each raw table against ``schemas/tables/raw_*.schema.yaml``, build the
  typed tables, set bad items aside in the ledger (``ingest()`` is the stage);
- ``cli``: ``instructx2x ingest`` outside Snakemake.
"""

from instructx2x.ingest.tables import RAW_SCHEMAS, TABLES, ingest

__all__ = ["RAW_SCHEMAS", "TABLES", "ingest"]
