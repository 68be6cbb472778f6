"""Difference answers (data-contract §5.5 templates) -> operations, exact or set aside whole."""

import pytest

from instructx2x.instructions.difference_parser import UnparseableAnswer, parse_difference, split_levels
from instructx2x.instructions.operation import Operation
from instructx2x.instructions.vocabulary import DISEASES


def ops(*items):
    return [Operation(*i) if i[0] != "change" else Operation(i[0], i[1], from_level=i[2], to_level=i[3])
            for i in items]


def _list(names):
    return ", ".join(names[:-1]) + ", and " + names[-1]


def answer(changes=(), added=(), missing=()):
    s = "".join(f"the level of {d} has changed from {a} to {b}. " for d, a, b in changes)
    if len(added) == 1:
        s += f"the main image has an additional finding of {added[0]} than the reference image. "
    elif added:
        s += f"the main image has additional findings of {_list(list(added))} than the reference image. "
    if len(missing) == 1:
        s += f"the main image is missing the finding of {missing[0]} than the reference image. "
    elif missing:
        s += f"the main image is missing the findings of {_list(list(missing))} than the reference image. "
    return s or "nothing has changed."


def test_published_examples():
    a = ("the main image has an additional finding of pneumothorax than the reference image. the main image is "
         "missing the findings of fracture, lung opacity, and pleural effusion than the reference image. ")
    assert parse_difference(a) == ops(("add", "pneumothorax"), ("remove", "fracture"), ("remove", "lung opacity"),
                                      ("remove", "pleural effusion"))
    a = ("the main image has additional findings of consolidation, and pneumonia than the reference image. the main "
         "image is missing the findings of pleural effusion, pneumothorax, and atelectasis than the reference image. ")
    assert parse_difference(a) == ops(("add", "consolidation"), ("add", "pneumonia"), ("remove", "pleural effusion"),
                                      ("remove", "pneumothorax"), ("remove", "atelectasis"))
    a = ("the level of pleural effusion has changed from small to moderate. the main image has an additional finding "
         "of cardiomegaly than the reference image. the main image is missing the finding of vascular congestion "
         "than the reference image. ")
    assert parse_difference(a) == ops(("change", "pleural effusion", "small", "moderate"), ("add", "cardiomegaly"),
                                      ("remove", "vascular congestion"))


def test_nothing_has_changed_is_no_operation():
    assert parse_difference("nothing has changed.") == []
    assert parse_difference("nothing has changed. ") == []


@pytest.mark.parametrize("d", DISEASES)
def test_every_finding_in_every_template(d):
    other = "edema" if d != "edema" else "hernia"
    assert parse_difference(answer(added=[d])) == ops(("add", d))
    assert parse_difference(answer(missing=[d])) == ops(("remove", d))
    assert parse_difference(answer(added=[d, other])) == ops(("add", d), ("add", other))
    assert parse_difference(answer(missing=[other, d])) == ops(("remove", other), ("remove", d))
    assert parse_difference(answer(changes=[(d, "mild", "severe")])) == ops(("change", d, "mild", "severe"))


def test_multiword_levels_and_several_level_sentences():
    a = answer(changes=[("pleural effusion", "small", "mild to moderate"), ("edema", "moderate to severe", "moderate"),
                        ("atelectasis", "small moderate", "minimal")], added=["enlargement of the cardiac silhouette"])
    assert parse_difference(a) == ops(("change", "pleural effusion", "small", "mild to moderate"),
                                      ("change", "edema", "moderate to severe", "moderate"),
                                      ("change", "atelectasis", "small moderate", "minimal"),
                                      ("add", "enlargement of the cardiac silhouette"))


def test_ambiguous_level_split_uses_hints_then_first():
    a = answer(changes=[("edema", "mild to moderate", "severe")])
    assert split_levels("mild to moderate to severe") == ("mild", "moderate to severe", True)
    got = parse_difference(a, level_hints={"edema": ("mild to moderate", "severe")})
    assert got == ops(("change", "edema", "mild to moderate", "severe"))
    got = parse_difference(a)
    assert got == ops(("change", "edema", "mild", "moderate to severe"))
    assert got[0].sources["levels_split"] == "ambiguous"


def test_trailing_space_optional_and_infection():
    a = answer(added=["infection"], missing=["pneumonia"])
    assert a.endswith(". ")
    assert parse_difference(a) == parse_difference(a.rstrip()) == ops(("add", "infection"), ("remove", "pneumonia"))


@pytest.mark.parametrize("bad", [
    "",
    "something has changed.",
    # unknown finding inside an otherwise good answer: nothing is kept
    "the main image has an additional finding of unicorn than the reference image. ",
    answer(added=["edema"]) + "the main image is missing the finding of blob than the reference image. ",
    # list without the serial comma / with plural for one item
    "the main image has additional findings of edema and hernia than the reference image. ",
    "the main image has additional findings of edema than the reference image. ",
    # sentences out of order or repeated
    answer(missing=["edema"]) + answer(added=["hernia"]),
    answer(added=["edema"]) + answer(changes=[("hernia", "mild", "severe")]),
    answer(added=["edema"]) + answer(added=["hernia"]),
    # a level that is not a level, a change to the same level
    answer(changes=[("edema", "tiny", "huge")]),
    answer(changes=[("edema", "mild", "mild")]),
    # the same finding added and removed
    answer(added=["edema"], missing=["edema"]),
    # truncated / extra text
    answer(added=["edema"])[:-10],
    answer(added=["edema"]) + "and more",
    "nothing has changed. " + answer(added=["edema"]),
    "The main image has an additional finding of edema than the reference image. ",
    None,
])
def test_malformed_answers_are_rejected_whole(bad):
    with pytest.raises(UnparseableAnswer) as err:
        parse_difference(bad)
    assert err.value.reason
