"""The instructions stage scored against the synthetic demo's ground truth (docs/synthetic.md):
operations exact for every answer, attributes equal to the truth per source, splits, identical bytes."""

import json  # noqa: F401
from pathlib import Path

import pandas as pd
import pytest

from instructx2x.core.config import REPO_ROOT, load_config
from instructx2x.ingest import ingest
from instructx2x.instructions.operation import load_operation_dicts as op_dicts
from instructx2x.instructions.build import build_instructions, build_operations
from instructx2x.instructions.vocabulary import location_side_zone, normalise_location


@pytest.fixture(scope="module")
def demo_tables(demo_dataset, tmp_path_factory):
    res = tmp_path_factory.mktemp("instr_demo")
    config = load_config(REPO_ROOT / "config.yaml", {"source": "local", "results_dir": str(res),
                                                     "local": {"raw_dir": str(demo_dataset)}})
    ingest(config, res / "tables", res / "ingest.tsv", res / "ingest.counts.tsv")
    return res, Path(demo_dataset) / "ground_truth"


def _ops(res, tag, **settings):
    t = res / "tables"
    out = res / f"ops_{tag}.parquet"
    df = build_operations(t / "vqa.parquet", t / "diseases.parquet", t / "reports.parquet", out,
                          res / f"l_{tag}.tsv", res / f"c_{tag}.tsv", settings=settings)
    return df, out


def _truth(gt):
    f = pd.read_parquet(gt / "findings.parquet")
    by_study = {}
    for r in f.itertuples(index=False):
        words = [w for w in ("bibasilar",) if r.finding == "atelectasis" and r.side == "bilateral"] or \
            [w for w in (r.side, r.zone) if isinstance(w, str) and w]
        by_study.setdefault(int(r.study_id), {})[r.finding] = (normalise_location(words), str(r.level))
    return by_study


def _expected_ops(cur, past):
    ops = set()
    for d, (_, lev) in cur.items():
        if d in past and past[d][1] != lev:
            ops.add(("change", d, past[d][1], lev))
        elif d not in past:
            ops.add(("add", d, None, None))
    ops |= {("remove", d, None, None) for d in past if d not in cur}
    return ops


def _score(df, truth):
    """{source: [matches, compared]} for location (side/zone) and severity."""
    score = {}
    for r in df[df["status"] == "ok"].itertuples(index=False):
        for o in op_dicts(r.operations):
            study = r.past_study_id if o["op"] == "remove" else r.current_study_id
            loc, lev = truth.get(study, {}).get(o["finding"], (None, None))
            if loc is not None:
                got, exp = location_side_zone(o["location"]), location_side_zone(loc)
                s = score.setdefault(("location", o["sources"].get("location")), [0, 0, 0])
                s[0] += int(got == exp)
                # consistent: every part the source states (side, zone) equals the truth
                s[2] += int(all(g is None or g == e for g, e in zip(got, exp)) and got != (None, None))
                s[1] += 1
            if o["op"] != "change" and lev is not None:
                s = score.setdefault(("severity", o["sources"].get("severity")), [0, 0, 0])
                s[0] += int(o["severity"] == lev)
                s[2] += int(o["severity"] == lev)
                s[1] += 1
    return score


@pytest.mark.slow
def test_operations_exact_and_attributes_match_truth(demo_tables):
    res, gt = demo_tables
    truth = _truth(gt)
    df, out = _ops(res, "all")
    assert (df["status"] != "unparseable").all(), df[df["status"] == "unparseable"]["reason"].tolist()
    assert len(df) > 10
    for r in df.itertuples(index=False):
        got = {(o["op"], o["finding"], o["from_level"], o["to_level"]) for o in op_dicts(r.operations)}
        exp = _expected_ops(truth.get(r.current_study_id, {}), truth.get(r.past_study_id, {}))
        assert got == exp, (r.pair_id, r.answer)
        assert r.n_ops == len(exp)
    score = _score(df, truth)
    assert all(m == n for m, n, _ in score.values()), score
    # each source alone
    for tag, settings in (("q", dict(use_keyinfo=False, use_reports=False)),
                          ("r", dict(use_keyinfo=False, use_questions=False))):
        sdf, _ = _ops(res, tag, **settings)
        for (attr, src), (m, n, consistent) in _score(sdf, truth).items():
            if src is not None:
                assert consistent == n, (tag, attr, src, m, n)
                if src != "question":  # the left/right question gives only a side
                    assert m == n, (tag, attr, src, m, n)
    _, out2 = _ops(res, "again")
    assert out.read_bytes() == out2.read_bytes()


@pytest.mark.slow
def test_splits_on_demo(demo_tables):
    res, gt = demo_tables
    df, ops_path = _ops(res, "split")
    ok = df[df["status"] == "ok"]
    acc = pd.DataFrame({"pair_id": ok["pair_id"], "aligned_current_path": "c.png", "past_path": "p.png"})
    acc.to_parquet(res / "acc.parquet", index=False)
    out = build_instructions(ops_path, res / "acc.parquet", res / "tables" / "studies.parquet", res / "i.parquet",
                             res / "t1.csv", res / "t1.md", res / "lj.tsv", res / "cj.tsv",
                             split_settings={"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}}, seed=5)
    assert len(out) == len(ok)
    per_subject = out.groupby("subject_id")["split"].nunique()
    assert (per_subject == 1).all()
    holdout = out["subject_id"].astype(str).str.startswith("19")
    assert (out.loc[holdout, "split"] == "holdout").all() and (out.loc[~holdout, "split"] != "holdout").all()
    assert set(out.loc[~holdout, "split"]) <= {"train", "val", "test"}
