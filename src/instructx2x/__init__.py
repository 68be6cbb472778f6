"""instructx2x: a reproducible pipeline for InstructX2X region-specific chest X-ray editing.

The library does all the work; the Snakemake rules and ``workflow_scripts/`` are thin wrappers.
"""

__version__ = "0.1.0"
