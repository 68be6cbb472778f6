"""Test-only helpers (not part of the library): the loopback PhysioNet mirror and tiny pipeline builders.

Importable as ``helpers`` from tests (pytest puts ``tests/`` on ``sys.path``) and from benchmarks
(which add ``tests/`` to ``sys.path`` themselves).
"""
