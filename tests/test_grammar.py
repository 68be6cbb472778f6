"""Instruction grammar: render/parse round-trip over everything the data can produce, typed input."""

import itertools

import pytest

from instructx2x.instructions.grammar import (
    UnparseableInstruction,
    finding_category,
    flip_instruction,
    flip_operations,
    location_side_zone,
    parse_instruction,
    render_instruction,
)
from instructx2x.instructions.operation import Operation, operations_from_json, operations_json
from instructx2x.instructions.vocabulary import DISEASES, LEVELS, normalise_location

LOCATIONS = [None, "left", "right", "bilateral", "bibasilar", "retrocardiac", "left basal", "right apical",
             "left lung base", "right lower lung", "lung bases", "left middle to lower lung", "middle to lower",
             "soft tissues", "left apical", "lower and probably also middle lung", "medial right lung base", "rib",
             "left rib"]
SEVERITIES = [None, "small", "mild to moderate", "moderate to severe", "small moderate", "minimal", "moderately"]


@pytest.mark.parametrize("finding", DISEASES)
def test_round_trip_every_finding(finding):
    for loc, sev in itertools.product(LOCATIONS, SEVERITIES):
        for op in ("add", "remove"):
            ops = [Operation(op, finding, location=normalise_location(loc), severity=sev)]
            assert parse_instruction(render_instruction(ops)) == ops, render_instruction(ops)
        for a, b in [("small", "moderate"), ("small", "mild to moderate"), ("moderate to severe", "moderate"),
                     ("mild to moderate", "moderate to large"), ("small moderate", "severe")]:
            ops = [Operation("change", finding, location=normalise_location(loc), from_level=a, to_level=b)]
            assert parse_instruction(render_instruction(ops)) == ops, render_instruction(ops)


def test_round_trip_several_operations_keeps_order():
    ops = [Operation("change", "pleural effusion", from_level="small", to_level="moderate"),
           Operation("add", "cardiomegaly"),
           Operation("add", "atelectasis", location="right lung base", severity="mild"),
           Operation("remove", "enlargement of the cardiac silhouette"),
           Operation("remove", "edema", location="bilateral", severity="moderate to severe")]
    text = render_instruction(ops)
    assert text.startswith("Change the level of pleural effusion from small to moderate; add a cardiomegaly")
    assert parse_instruction(text) == ops


def test_rendered_examples():
    assert render_instruction([Operation("add", "pleural effusion", "left", "moderate")]) == \
        "Add a moderate left pleural effusion"
    assert render_instruction([Operation("remove", "atelectasis", "right lung base")]) == \
        "Remove the atelectasis in the right lung base"
    assert render_instruction([Operation("change", "edema", from_level="mild", to_level="moderate")]) == \
        "Change the level of edema from mild to moderate"


@pytest.mark.parametrize("text,expected", [
    ("Add moderate left pleural effusion", [Operation("add", "pleural effusion", "left", "moderate")]),
    ("ADD A MODERATE LEFT-SIDED PLEURAL EFFUSION.", [Operation("add", "pleural effusion", "left", "moderate")]),
    ("add the finding of pleural effusion", [Operation("add", "pleural effusion")]),
    ("insert a small effusion at the left base", [Operation("add", "pleural effusion", "left lung base", "small")]),
    ("remove the right-sided pneumothorax", [Operation("remove", "pneumothorax", "right")]),
    ("delete pulmonary edema", [Operation("remove", "edema")]),
    ("Add edema and a small right effusion", [Operation("add", "edema"),
                                              Operation("add", "pleural effusion", "right", "small")]),
    ("add cardiomegaly, then remove the atelectasis in the left lower lobe",
     [Operation("add", "cardiomegaly"), Operation("remove", "atelectasis", "left lower lung")]),
    ("Add CHF and remove the opacity", [Operation("add", "heart failure"), Operation("remove", "lung opacity")]),
    ("increase the pleural effusion from small to moderate",
     [Operation("change", "pleural effusion", from_level="small", to_level="moderate")]),
    ("change the level of edema from mild to moderate to severe",
     [Operation("change", "edema", from_level="mild", to_level="moderate to severe")]),
    ("Add infection in the right lung", [Operation("add", "infection", "right")]),
])
def test_typed_variants(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "make it look better", "add a unicorn", "add pleural effusion purple",
                                  "change the level of edema", "change edema from tiny to huge"])
def test_unreadable_instructions_raise(text):
    with pytest.raises(UnparseableInstruction):
        parse_instruction(text)


ONE_UP = dict(direction="increase")
ONE_DOWN = dict(direction="decrease")


@pytest.mark.parametrize("text,expected", [
    # the finding first, its change after it (report style)
    ("Left pleural effusion has increased", [Operation("change", "pleural effusion", "left", **ONE_UP)]),
    ("left effusion, worse", [Operation("change", "pleural effusion", "left", **ONE_UP)]),
    ("the edema is better", [Operation("change", "edema", **ONE_DOWN)]),
    ("left lower lobe atelectasis has worsened", [Operation("change", "atelectasis", "left lower lung", **ONE_UP)]),
    ("Left effusion increased to moderate",
     [Operation("change", "pleural effusion", "left", to_level="moderate", direction="increase")]),
    ("the effusion has increased from small to moderate",
     [Operation("change", "pleural effusion", from_level="small", to_level="moderate")]),
    ("right pneumothorax, resolved", [Operation("remove", "pneumothorax", "right")]),
    ("left effusion is no longer present", [Operation("remove", "pleural effusion", "left")]),
    ("small, left-sided effusion is new", [Operation("add", "pleural effusion", "left", "small")]),
    ("cardiomegaly is new", [Operation("add", "cardiomegaly")]),
    # a stated enlarged heart is cardiomegaly with its level; a heart that has enlarged is a change
    ("heart is mildly enlarged", [Operation("add", "cardiomegaly", severity="mildly")]),
    ("Heart size is moderately enlarged", [Operation("add", "cardiomegaly", severity="moderately")]),
    ("the heart has enlarged", [Operation("change", "cardiomegaly", **ONE_UP)]),
    ("left effusion is slightly worse", [Operation("change", "pleural effusion", "left", **ONE_UP)]),
    # existential forms
    ("There is a new left effusion", [Operation("add", "pleural effusion", "left")]),
    ("there is a small right pneumothorax", [Operation("add", "pneumothorax", "right", "small")]),
    ("There are bilateral effusions", [Operation("add", "pleural effusion", "bilateral")]),
    # several such clauses joined by `and`
    ("effusion worse and edema better", [Operation("change", "pleural effusion", **ONE_UP),
                                         Operation("change", "edema", **ONE_DOWN)]),
])
def test_finding_first_and_existential_forms(text, expected):
    ops = parse_instruction(text)
    assert ops == expected
    assert parse_instruction(render_instruction(ops)) == ops


@pytest.mark.parametrize("text", ["the effusion is not worse", "pleural effusion on the left",
                                  "left effusion, right pneumothorax, resolved", "effusion worse and purple"])
def test_finding_first_forms_that_are_not_guessed(text):
    with pytest.raises(UnparseableInstruction):
        parse_instruction(text)


@pytest.mark.parametrize("text,expected", [
    # the forms
    ("Increase the effusion", [Operation("change", "pleural effusion", **ONE_UP)]),
    ("Please remove the edema", [Operation("remove", "edema")]),
    ("Worsening left effusion", [Operation("change", "pleural effusion", "left", **ONE_UP)]),
    ("Add an enlarged pleural effusion", [Operation("add", "pleural effusion", severity="large")]),
    # both directions, synonyms, politeness
    ("decrease the right pleural effusion", [Operation("change", "pleural effusion", "right", **ONE_DOWN)]),
    ("Worsen the pulmonary oedema", [Operation("change", "edema", **ONE_UP)]),
    ("improve the bibasilar atelectasis", [Operation("change", "atelectasis", "bibasilar", **ONE_DOWN)]),
    ("Improving edema.", [Operation("change", "edema", **ONE_DOWN)]),
    ("resolve the left pneumothorax", [Operation("remove", "pneumothorax", "left")]),
    ("Resolved right effusion", [Operation("remove", "pleural effusion", "right")]),
    ("could you please get rid of the enlarged heart?", [Operation("remove", "cardiomegaly")]),
    ("make the effusion smaller", [Operation("change", "pleural effusion", **ONE_DOWN)]),
    ("make the consolidation in the left lower lobe worse",
     [Operation("change", "consolidation", "left lower lung", **ONE_UP)]),
    ("make the pneumothorax go away", [Operation("remove", "pneumothorax")]),
    ("New small left-sided effusion", [Operation("add", "pleural effusion", "left", "small")]),
    ("increase the effusion to moderate",
     [Operation("change", "pleural effusion", to_level="moderate", direction="increase")]),
    ("Reduce the edema to mild", [Operation("change", "edema", to_level="mild", direction="decrease")]),
    ("add a slight left apical pneumothorax", [Operation("add", "pneumothorax", "left apical", "mild")]),
    ("Add a tiny PTX at the right apex, then decrease the effusion",
     [Operation("add", "pneumothorax", "right apical", "small"), Operation("change", "pleural effusion", **ONE_DOWN)]),
    ("Add edema and make the effusion bigger", [Operation("add", "edema"),
                                                Operation("change", "pleural effusion", **ONE_UP)]),
    ("add edema in the left upper and lower lung", [Operation("add", "edema", "left upper and lower lung")]),
    ("Add an enlarged heart", [Operation("add", "cardiomegaly")]),
])
def test_typed_instructions_people_write(text, expected):
    ops = parse_instruction(text)
    assert ops == expected
    assert parse_instruction(render_instruction(ops)) == ops  # the canonical form reads back


def test_change_without_levels_is_one_step_and_stated():
    (op,) = parse_instruction("Increase the effusion")
    assert op.one_step and op.from_level is None and op.to_level is None
    assert render_instruction([op]) == "Increase the level of pleural effusion by one step"
    assert op.to_cli_dict()["change"] == "one-step increase of the current level (no levels given)"
    with pytest.raises(UnparseableInstruction, match="direction"):
        parse_instruction("change the level of edema")  # no level and no direction: not guessed


@pytest.mark.parametrize("text,suggestion", [
    ("add a left pleural efusion", "Add a left pleural effusion"),
    ("remove the pnemothorax", "Remove the pneumothorax"),
    ("pleural effusion on the left", "Add a left pleural effusion"),
    ("incrase the edema", "Increase the level of edema by one step"),
    ("change the level of edema", "Increase the level of edema by one step"),
])
def test_unparsed_forms_say_did_you_mean(text, suggestion):
    with pytest.raises(UnparseableInstruction) as info:
        parse_instruction(text)
    assert info.value.suggestion == suggestion
    assert f'did you mean "{suggestion}"?' in str(info.value)


def test_category_and_side_zone_helpers():
    assert finding_category("pleural effusion") == "Pleural Effusion"
    assert finding_category("effusion") == "Pleural Effusion"
    assert finding_category("enlargement of the cardiac silhouette") == "Cardiomegaly"
    assert finding_category("infection") == "Pneumonia"
    assert finding_category("fracture") is None
    assert location_side_zone("left lung base") == ("left", "basal")
    assert location_side_zone("right apical") == ("right", "apical")
    assert location_side_zone("bibasilar") == ("bilateral", "basal")
    assert location_side_zone("left middle to lower lung") == ("left", "middle to lower")  # compound zone kept whole
    assert location_side_zone("retrocardiac") == (None, "retrocardiac")
    assert location_side_zone(None) == (None, None)


def test_flip_swaps_sides_in_text_and_operations():
    text = "Add a moderate left pleural effusion; remove the atelectasis in the right lung base"
    flipped = flip_instruction(text)
    assert flipped == "Add a moderate right pleural effusion; remove the atelectasis in the left lung base"
    assert parse_instruction(flipped) == flip_operations(parse_instruction(text))
    assert flip_instruction(flipped) == text


def test_operations_json_is_canonical_and_round_trips():
    ops = [Operation("add", "edema", "bilateral", "mild", sources={"severity": "keyinfo", "location": "report"})]
    text = operations_json(ops)
    assert text == operations_json(operations_from_json(text))
    assert operations_from_json(text)[0].sources == {"location": "report", "severity": "keyinfo"}
    assert " " not in text.replace("pleural effusion", "")[:20]
    assert set(LEVELS) >= {"mild to moderate"}


def _cli(argv, capsys):
    import argparse

    from instructx2x.instructions import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    status = args.func(args)
    return status, capsys.readouterr()


def test_cli_parse_instruction_and_difference(capsys):
    import json

    status, out = _cli(["parse-instruction", "Add moderate left pleural effusion"], capsys)
    assert status == 0
    assert json.loads(out.out) == [{"op": "add", "finding": "pleural effusion", "location": "left",
                                    "severity": "moderate", "from": None, "to": None, "direction": None}]
    status, out = _cli(["parse-difference", "the level of edema has changed from mild to moderate. "], capsys)
    assert status == 0 and json.loads(out.out) == [{"op": "change", "finding": "edema", "location": None,
                                                   "severity": None, "from": "mild", "to": "moderate",
                                                   "direction": None}]
    status, out = _cli(["parse-difference", "nothing has changed."], capsys)
    assert status == 0 and json.loads(out.out) == []
    status, out = _cli(["parse-instruction", "make it pretty"], capsys)
    assert status == 2 and "error" in out.err
    status, out = _cli(["parse-instruction", "Increase the effusion"], capsys)
    assert status == 0 and json.loads(out.out)[0]["change"] == "one-step increase of the current level (no levels given)"
    status, out = _cli(["parse-instruction", "add a left pleural efusion"], capsys)
    assert status == 2 and 'did you mean "Add a left pleural effusion"?' in out.err
