"""Locations as data (instructions/data/locations.csv) and the grammar's round trip, as properties.

Hypothesis draws operations from the vocabulary (every finding, every canonical location of the
side x zone table, level words and multi-word levels, one-step and to-level changes) and checks
parse(render(ops)) == ops; it draws location phrases the way reports and people write them and
checks that normalising is idempotent and keeps the phrase's side and zone."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from instructx2x.instructions.grammar import parse_instruction, render_instruction
from instructx2x.instructions.operation import Operation
from instructx2x.instructions.vocabulary import (
    CANONICAL_LOCATIONS,
    DISEASES,
    LEVELS,
    LOCATION_TABLE,
    ZONES,
    location_side_zone,
    normalise_location,
    parse_location,
)

LEVEL = st.lists(st.sampled_from(LEVELS + ("large",)), min_size=1, max_size=2).map(" ".join)
LOCATION = st.one_of(st.none(), st.sampled_from(CANONICAL_LOCATIONS))
FINDING = st.sampled_from(DISEASES)


@st.composite
def operations(draw):
    kind = draw(st.sampled_from(["add", "remove", "change", "one-step", "to-level"]))
    finding, loc = draw(FINDING), draw(LOCATION)
    if kind in ("add", "remove"):
        return Operation(kind, finding, loc, draw(st.one_of(st.none(), LEVEL)))
    if kind == "change":
        a = draw(LEVEL)
        b = draw(LEVEL.filter(lambda x: x != a))
        return Operation("change", finding, loc, from_level=a, to_level=b)
    direction = draw(st.sampled_from(["increase", "decrease"]))
    if kind == "one-step":
        return Operation("change", finding, loc, direction=direction)
    return Operation("change", finding, loc, to_level=draw(LEVEL), direction=direction)


@settings(max_examples=400, deadline=None)
@given(st.lists(operations(), min_size=1, max_size=4, unique_by=lambda o: o.finding))
def test_parse_render_round_trip(ops):
    text = render_instruction(ops)
    assert parse_instruction(text) == ops, text


def test_table_is_side_by_zone_and_canonical_texts_read_back():
    for (side, zone), text in LOCATION_TABLE.items():
        assert zone is None or zone in ZONES
        assert parse_location(text)[:2] == (side, zone), text
        assert normalise_location(text) == text
    assert len(set(LOCATION_TABLE.values())) == len(LOCATION_TABLE)  # one text per (side, zone)
    for zone in ("middle to lower", "upper to middle", "perihilar", "retrocardiac", "medial basal"):
        assert zone in ZONES


SIDE_WORDS = {None: [""], "left": ["left", "left-sided", "Left sided"], "right": ["right", "right-sided"],
              "bilateral": ["bilateral", "both", "bilaterally"]}
# phrases as the reports and people write them, with the (zone, implied side) they name
ZONE_PHRASES = {
    None: [("", None)],
    "apical": [("apical", None), ("apex", None), ("apices", "bilateral")],
    "upper": [("upper lobe", None), ("upper lung", None), ("upper zone", None)],
    "middle": [("mid lung", None), ("middle lobe", None), ("mid zone", None)],
    "lower": [("lower lobe", None), ("lower lung", None), ("lower zone", None)],
    "basal": [("base", None), ("basilar", None), ("lung base", None), ("bases", "bilateral"), ("bibasilar", "bilateral"),
              ("basal", None)],
    "middle to lower": [("mid to lower lung", None), ("middle to lower", None), ("middle and lower lobes", "bilateral"),
                        ("lower and probably also middle lung", None)],
    "upper to middle": [("upper to mid lung", None), ("upper and middle lobe", None)],
    "perihilar": [("perihilar", None), ("parahilar region", None)],
    "retrocardiac": [("retrocardiac", None)],
}
NOUN = st.sampled_from(["", " area", " region", " portion"])


@st.composite
def location_phrase(draw):
    side = draw(st.sampled_from(list(SIDE_WORDS)))
    zone = draw(st.sampled_from(list(ZONE_PHRASES)))
    phrase, implied = draw(st.sampled_from(ZONE_PHRASES[zone]))
    side_word = draw(st.sampled_from(SIDE_WORDS[side]))
    text = " ".join(w for w in (draw(st.sampled_from(["", "the"])), side_word, phrase) if w) + draw(NOUN)
    return text, (side or implied, zone)


@settings(max_examples=600, deadline=None)
@given(location_phrase())
def test_normalising_is_idempotent_and_keeps_side_and_zone(case):
    text, (side, zone) = case
    once = normalise_location(text)
    assert normalise_location(once) == once, (text, once)
    if side is None and zone is None:
        assert once is None
    else:
        assert location_side_zone(once) == (side, zone), (text, once)


def test_the_issue_cases():
    assert normalise_location("left-sided base") == normalise_location("left base") == "left lung base"
    assert normalise_location(normalise_location("left-sided base")) == "left lung base"
    assert location_side_zone("middle to lower") == (None, "middle to lower")
    assert location_side_zone("the right mid to lower hemithorax") == ("right", "middle to lower")
    assert normalise_location("left greater than right") == "bilateral"
    assert normalise_location("lung bases") == normalise_location("bibasilar") == "bibasilar"
    assert normalise_location(["left", "lobe"]) == "left"
