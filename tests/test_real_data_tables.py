"""README's "Using the real data" and docs/registration.md state the recorded real-data numbers beside the
demo's: their <!-- real_data:NAME --> blocks are what benchmarks/real_data_tables.py renders from
benchmarks/real_run/*.json (the recorded runs of registration_real.py, views_real.py, registration_demo.py)."""
from __future__ import annotations

import copy
import sys

import pytest


@pytest.fixture(scope="module")
def tables(repo_root):
    sys.path.insert(0, str(repo_root / "benchmarks"))
    import real_data_tables

    return real_data_tables


def test_readme_and_docs_blocks_are_the_recorded_runs(repo_root, tables):
    blocks = tables.render(tables.load())
    for rel, names in tables.FILES.items():
        text = (repo_root / rel).read_text()
        for name in names:
            assert tables.read_block(text, name) == blocks[name], (
                f"{rel}: block {name!r} differs from benchmarks/real_run/: run `python benchmarks/real_data_tables.py --write`")
    rec = tables.load()
    held = rec["registration_real"]["targets"]["held-out"]
    n, d = held["known_within_1px"]
    assert f"{n}/{d}" in blocks["summary"] and rec["registration_real"]["commit"] in blocks["summary"]


def test_a_changed_record_changes_the_blocks(tables):
    rec = tables.load()
    before = tables.render(rec)
    changed = copy.deepcopy(rec)
    changed["registration_real"]["targets"]["held-out"]["known_within_1px"][0] -= 1
    assert tables.render(changed)["summary"] != before["summary"]
    changed = copy.deepcopy(rec)
    changed["registration_real"]["derived_on_calibration_half"]["structure_ncc_min"] += 0.05
    assert tables.render(changed)["calibration"] != before["calibration"]


def test_write_blocks_needs_its_markers(tables):
    text = "a\n<!-- real_data:summary -->\nold\n<!-- /real_data:summary -->\nb"
    assert tables.write_blocks(text, {"summary": "new"}, ["summary"]) == \
        "a\n<!-- real_data:summary -->\nnew\n<!-- /real_data:summary -->\nb"
    with pytest.raises(ValueError, match="calibration"):
        tables.write_blocks(text, {"calibration": "x"}, ["calibration"])
