"""Stage ``ingest`` (``rules/ingest.smk``): the raw tables of the five datasets, validated, as typed parquet.

- ``raw``: version-dependent raw schemas, typed reading with per-item set-aside, demo-tree
  completeness and the raw manifest;
- ``cxr``: the images, reports and studies tables (MIMIC-CXR-JPG, MIMIC-CXR);
- ``annotations``: patients/admissions (MIMIC-IV), Diff-VQA tables, MS-CXR boxes;
- ``tables``: the stage itself (``ingest()``): build every table, write them and the ledger;
- ``cli``: ``instructx2x ingest`` outside Snakemake.
"""

from instructx2x.ingest.raw import RAW_SCHEMAS
from instructx2x.ingest.tables import TABLES, ingest

__all__ = ["RAW_SCHEMAS", "TABLES", "ingest"]
