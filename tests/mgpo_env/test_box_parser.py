"""The box parser: every accepted form, hostile text, and a round trip."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgpo_env.box_parser import MAX_SCAN_CHARS, format_box, parse_box, parse_boxes

numbers = st.one_of(st.integers(-10_000, 10_000), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))
quads = st.tuples(numbers, numbers, numbers, numbers)


def test_reference_fenced_json():
    text = 'Let me look.\n```json\n[{"bbox_2d": [120, 45, 380, 300], "label": "sign"}]\n```\nmore text'
    box = parse_box(text)
    assert box.coords == (120.0, 45.0, 380.0, 300.0) and box.label == "sign" and box.source == "fenced_json"


def test_first_fenced_block_that_holds_a_box_wins():
    text = "```python\nprint(1)\n```\n```json\n[]\n```\n```json\n{\"bbox_2d\": [1, 2, 3, 4]}\n```\n```json\n[[5,6,7,8]]\n```"
    assert parse_box(text).coords == (1, 2, 3, 4)


def test_bare_json_object_list_and_quad():
    assert parse_box('the box is {"bbox_2d": [1.5, 2, 30, 40.25]} ok').coords == (1.5, 2.0, 30.0, 40.25)
    assert parse_box('[{"bbox": [1, 2, 3, 4], "label": 7}]').coords == (1, 2, 3, 4)
    assert parse_box('[{"bbox": [1, 2, 3, 4], "label": 7}]').label is None
    assert parse_box("region: [10, 20, 30, 40]").coords == (10, 20, 30, 40)
    assert len(parse_boxes('[{"bbox_2d": [1,2,3,4]}, {"bbox_2d": [5,6,7,8]}]')) == 2


def test_plain_forms():
    assert parse_box("crop (0.1, 0.25, .5, 1) please").coords == (0.1, 0.25, 0.5, 1.0)
    assert parse_box("[ 1e2 , 2 , 300 , 4e2 ]").coords == (100.0, 2.0, 300.0, 400.0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no box",
        "[1, 2, 3]",
        '{"bbox_2d": [1, 2, 3]}',
        '{"bbox_2d": ["1", "2", "3", "4"]}',
        '{"bbox_2d": [true, false, true, true]}',
        '{"bbox_2d": [NaN, 1, 2, 3]}',
        '{"bbox_2d": [Infinity, 1, 2, 3]}',
        "```json\n[{]\n```",
        "[" * 50_000,
        "{" * 50_000 + "}" * 50_000,
        "\x00\xff\ud7ff" * 1000,
        "__import__('os').system('echo hi')",
    ],
)
def test_hostile_or_empty_text_gives_no_box(text):
    assert parse_box(text) is None


def test_text_beyond_the_scan_limit_is_ignored():
    assert parse_box(" " * MAX_SCAN_CHARS + "[1, 2, 3, 4]") is None


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse_box(b"[1,2,3,4]")  # type: ignore[arg-type]


@given(quads, st.sampled_from(["fenced", "bare", "plain", "object"]))
def test_any_quad_round_trips_through_every_form(quad, form):
    payload = json.dumps([{"bbox_2d": list(quad), "label": "x"}])
    text = {
        "fenced": f"Sure.\n```json\n{payload}\n```",
        "bare": f"Here: {payload} done",
        "plain": "box " + "[" + ", ".join(repr(float(v)) for v in quad) + "]",
        "object": json.dumps({"bbox_2d": list(quad)}),
    }[form]
    parsed = parse_box(text)
    assert parsed is not None
    assert parsed.coords == pytest.approx(tuple(float(v) for v in quad))


@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text):
    result = parse_box(text)
    assert result is None or len(result.coords) == 4


def test_format_box_is_parsed_back():
    assert parse_box(format_box((10.2, 20, 300, 400))).coords == (10, 20, 300, 400)
    assert parse_box(format_box((0.1234, 0.2, 0.5, 0.9))).coords == (0.123, 0.2, 0.5, 0.9)
