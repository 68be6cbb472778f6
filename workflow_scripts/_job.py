"""Imported first by every workflow script: ``import _job  # noqa: F401``.

1. The project's code is taken from this repository's ``src/`` (this file's ``../src``, i.e.
   ``workflow.basedir/src``), put first on ``sys.path``: the job's environment (a conda env built
   from ``envs/*.yaml``, the project venv) needs the pinned packages, not an installed copy of
   instructx2x, and a stale installed copy can never shadow the code whose version the rule's
   ``code`` param names. Snakemake puts this directory on the script's path, which is how this
   module is found.
2. The job records its lineage (``instructx2x.provenance.store``): inputs hashed now, outputs and
   the record written when the script ends without an error.
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parent.parent / "src")
while _SRC in sys.path:  # Snakemake may have appended it (after site-packages): first, once
    sys.path.remove(_SRC)
sys.path.insert(0, _SRC)

from instructx2x.provenance.store import record_script_job  # noqa: E402

RECORDER = record_script_job()
