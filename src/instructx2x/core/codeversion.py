"""Code versions: a short hash of the library source a stage runs, passed to rules as a param.

Snakemake does not reliably notice edits to imported library code; a rule that declares
``params: code=code_version("registration")`` re-runs when that module (or a module listed with
it) changes, and only then.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/instructx2x


def _module_files(module: str) -> list[Path]:
    """The files of an instructx2x module or package, found on disk without importing anything.

    (Importing would run package ``__init__`` files and need the stage's dependencies, e.g.
    SimpleITK for ``registration.stage``, in every environment that merely parses the Snakefile.)
    """
    name = module.removeprefix("instructx2x.").removeprefix("instructx2x")
    base = PACKAGE_DIR.joinpath(*name.split(".")) if name else PACKAGE_DIR
    if base.is_dir() and (base / "__init__.py").exists():
        # the package's source and its data tables (e.g. instructions/data/locations.csv)
        return sorted(p for p in base.rglob("*") if p.suffix in (".py", ".csv") and "__pycache__" not in p.parts)
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    raise ModuleNotFoundError(f"no module {module!r} in instructx2x")


def code_version(*modules: str) -> str:
    """SHA-256 (first 12 hex digits) over the source of the given instructx2x modules/packages."""
    digest = hashlib.sha256()
    for module in modules:
        for path in _module_files(module):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
