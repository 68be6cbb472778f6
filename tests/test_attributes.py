"""Report attributes attached by scope (instructions/report_scope.py): each location and level goes to the
finding it modifies, never to every finding of the sentence; negation in the same scope; spans kept."""

from __future__ import annotations

import json

import pytest

from instructx2x.instructions.report_scope import ReportExtractor, extract_report_attributes


@pytest.fixture(scope="module")
def ex():
    return ReportExtractor()


def _by_finding(ex, text):
    out = {}
    for m in ex.mentions(text):
        out.setdefault(m.finding, []).append((m.location, m.severity, m.negated))
    return out


@pytest.mark.parametrize("text,expected", [
    # the sentence: two findings, two sides, one level
    ("Small left pleural effusion and right basilar atelectasis.",
     {"pleural effusion": [("left", "small", False)], "atelectasis": [("right lung base", None, False)]}),
    ("Moderate right pleural effusion and left lower lobe atelectasis.",
     {"pleural effusion": [("right", "moderate", False)], "atelectasis": [("left lower lung", None, False)]}),
    ("Mild pulmonary edema and small bilateral effusions.",
     {"edema": [(None, "mild", False)], "pleural effusion": [("bilateral", "small", False)]}),
    ("Small bilateral pleural effusions, left greater than right.",
     {"pleural effusion": [("bilateral", "small", False)]}),
    ("Persistent moderate right effusion with adjacent atelectasis.",
     {"pleural effusion": [("right", "moderate", False)], "atelectasis": [("right", None, False)]}),
    ("Interval increase in the right pleural effusion, now moderate in size.",
     {"pleural effusion": [("right", "moderate", False)]}),
    ("Opacity in the right lower lobe may represent atelectasis or pneumonia.",
     {"lung opacity": [("right lower lung", None, False)], "atelectasis": [("right lower lung", None, False)],
      "pneumonia": [("right lower lung", None, False)]}),
    ("Left-sided pleural effusion is small; no pneumothorax.",
     {"pleural effusion": [("left", "small", False)], "pneumothorax": [(None, None, True)]}),
    ("Tiny left apical pneumothorax.", {"pneumothorax": [("left apical", "small", False)]}),
    ("Patchy opacities in the right mid to lower lung.", {"lung opacity": [("right middle to lower lung", None, False)]}),
    # negation: before the finding up to a terminator, after it within its clause; pseudo-negations are not
    ("Bibasilar atelectasis. No pleural effusion or pneumothorax.",
     {"atelectasis": [("bibasilar", None, False)], "pleural effusion": [(None, None, True)],
      "pneumothorax": [(None, None, True)]}),
    ("No pneumothorax, but a small right effusion is seen.",
     {"pneumothorax": [(None, None, True)], "pleural effusion": [("right", "small", False)]}),
    ("The right pleural effusion has resolved. Small left effusion persists.",
     {"pleural effusion": [("right", None, True), ("left", "small", False)]}),
    ("No significant change in the small left pleural effusion.", {"pleural effusion": [("left", "small", False)]}),
    ("Right lower lobe pneumonia cannot be excluded.", {"pneumonia": [("right lower lung", None, False)]}),
    ("Without focal consolidation. Mild cardiomegaly.",
     {"consolidation": [(None, None, True)], "cardiomegaly": [(None, "mild", False)]}),
    # a level inside the finding phrase: `heart is mildly enlarged`
    ("The heart is mildly enlarged.", {"cardiomegaly": [(None, "mildly", False)]}),
    ("Heart size remains moderately enlarged. Small left effusion.",
     {"cardiomegaly": [(None, "moderately", False)], "pleural effusion": [("left", "small", False)]}),
    ("Heart is slightly enlarged and there is mild edema.",
     {"cardiomegaly": [(None, "mildly", False)], "edema": [(None, "mild", False)]}),
    ("The heart is not enlarged. Heart size is normal.", {}),
])
def test_attachment_by_scope(ex, text, expected):
    assert _by_finding(ex, text) == expected


def test_spans_point_at_the_words_in_the_report(ex):
    text = " FINDINGS: \n There is a small left pleural effusion with adjacent atelectasis.  No\n pneumothorax.\n"
    res = extract_report_attributes(text, "effusion", ex)
    assert (res["finding"], res["source"], res["location"], res["severity"]) == ("pleural effusion", "report", "left", "small")
    for key, words in (("location_span", "left"), ("severity_span", "small")):
        span = res[key]
        assert text[span["start"]:span["end"]] == span["text"] == words
    atel = extract_report_attributes(text, "atelectasis", ex)
    assert atel["location"] == "left" and atel["mentions"][0]["location_spans"][0][3] == "adjacent"
    ptx = extract_report_attributes(text, "pneumothorax", ex)
    assert ptx["location"] is None and ptx["mentions"][0]["negated"] is True


def test_extract_attributes_cli(tmp_path, capsys):
    from instructx2x.cli import main

    report = tmp_path / "s50000001.txt"
    report.write_text(" FINDINGS: \n \n Small left pleural effusion and right basilar atelectasis.\n")
    assert main(["extract-attributes", "--finding", "pleural effusion", str(report)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["location"], out["severity"], out["location_span"]["text"]) == ("left", "small", "left")
    assert main(["extract-attributes", "--finding", "atelectasis", str(report)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["location"], out["severity"], out["location_span"]["text"]) == ("right lung base", None, "right basilar")
    assert main(["extract-attributes", "--finding", "unicorn", str(report)]) == 2
    assert "unknown finding" in capsys.readouterr().err
    assert main(["extract-attributes", "--finding", "edema", str(tmp_path / "missing.txt")]) == 2
