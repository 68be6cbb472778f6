"""Code versions: a short hash of the library source a stage runs, passed to rules as a param.

Snakemake does not reliably notice edits to imported library code; a rule that declares
``params: code=code_version("registration")`` re-runs when that module (or a module listed with
it) changes, and only then.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path


def _module_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module if module.startswith("instructx2x") else f"instructx2x.{module}")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no module {module!r} in instructx2x")
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        # the package's source and its data tables (e.g. instructions/data/locations.csv)
        return sorted(p for p in origin.parent.rglob("*") if p.suffix in (".py", ".csv") and "__pycache__" not in p.parts)
    return [origin]


def code_version(*modules: str) -> str:
    """SHA-256 (first 12 hex digits) over the source of the given instructx2x modules/packages."""
    digest = hashlib.sha256()
    for module in modules:
        for path in _module_files(module):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
