"""Find the box a model named in its text. Pure functions, no environment state.

Accepted forms, tried in this order (the first that yields a box wins):

1. A fenced code block (```` ```json ... ``` ```` or a bare ```` ``` ````) holding JSON:
   the published reference's form, a list of ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}``.
2. Bare JSON anywhere in the text: an object with ``bbox_2d`` (or ``bbox`` / ``box``),
   a list of such objects, or a list of four numbers.
3. A plain bracketed quadruple such as ``[12, 40.5, 300, 420]`` or ``(12, 40, 300, 420)``.

Integers and floats are both accepted. JSON is read with :mod:`json`, never
``eval``. Text is scanned only up to ``MAX_SCAN_CHARS`` so hostile input costs
bounded time.

Example:
    >>> parse_box('```json\\n[{"bbox_2d": [10, 20, 110, 220], "label": "cat"}]\\n```').coords
    (10.0, 20.0, 110.0, 220.0)
    >>> parse_box("I would look at [0.1, 0.2, 0.5, 0.9].").coords
    (0.1, 0.2, 0.5, 0.9)
    >>> parse_box("no box here") is None
    True
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator, Optional

# Long enough for any sane answer; a cap keeps a pathological action cheap.
MAX_SCAN_CHARS = 20_000
# How many '[' / '{' starting points to try as bare JSON before giving up.
MAX_JSON_STARTS = 200

BOX_KEYS = ("bbox_2d", "bbox", "box")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.DOTALL)
_JSON_START = re.compile(r"[\[{]")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PLAIN_QUAD = re.compile(
    rf"[\[\(]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\]\)]"
)


@dataclass(frozen=True)
class ParsedBox:
    """A box as the model wrote it: four numbers in the model's coordinate frame."""

    coords: tuple[float, float, float, float]
    label: Optional[str] = None
    source: str = "fenced_json"  # "fenced_json", "bare_json" or "plain"


def _as_number(value: Any) -> Optional[float]:
    # bool is an int subclass; "true" is no coordinate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _quad(value: Any) -> Optional[tuple[float, float, float, float]]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [_as_number(v) for v in value]
    if any(n is None for n in numbers):
        return None
    return tuple(numbers)  # type: ignore[return-value]


def _boxes_in(value: Any, source: str) -> Iterator[ParsedBox]:
    """Yield every box a decoded JSON value holds, in order."""
    if isinstance(value, dict):
        for key in BOX_KEYS:
            if key in value:
                quad = _quad(value[key])
                if quad is not None:
                    label = value.get("label")
                    yield ParsedBox(quad, label if isinstance(label, str) else None, source)
                break
        return
    if isinstance(value, list):
        quad = _quad(value)
        if quad is not None:
            yield ParsedBox(quad, None, source)
            return
        for item in value[:64]:
            if isinstance(item, (dict, list)):
                yield from _boxes_in(item, source)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _fenced_boxes(text: str) -> Iterator[ParsedBox]:
    for match in _FENCE.finditer(text):
        value = _loads(match.group(2).strip())
        if value is not None:
            yield from _boxes_in(value, "fenced_json")


def _bare_json_boxes(text: str) -> Iterator[ParsedBox]:
    decoder = json.JSONDecoder()
    starts = 0
    position = 0
    while starts < MAX_JSON_STARTS:
        match = _JSON_START.search(text, position)
        if match is None:
            return
        starts += 1
        try:
            value, end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            position = match.start() + 1
            continue
        yield from _boxes_in(value, "bare_json")
        position = end


def _plain_boxes(text: str) -> Iterator[ParsedBox]:
    for match in _PLAIN_QUAD.finditer(text):
        numbers = [float(g) for g in match.groups()]
        if all(math.isfinite(n) for n in numbers):
            yield ParsedBox(tuple(numbers), None, "plain")  # type: ignore[arg-type]


def parse_boxes(text: str) -> list[ParsedBox]:
    """Every box found by the first form (fenced, bare JSON, plain) that finds any."""
    if not isinstance(text, str):
        raise TypeError(f"parse_boxes expects a str, got {type(text).__name__}")
    text = text[:MAX_SCAN_CHARS]
    for finder in (_fenced_boxes, _bare_json_boxes, _plain_boxes):
        found = list(finder(text))
        if found:
            return found
    return []


def parse_box(text: str) -> Optional[ParsedBox]:
    """The first box in ``text`` (see the module docstring), or ``None``."""
    boxes = parse_boxes(text)
    return boxes[0] if boxes else None


def format_box(coords: tuple[float, ...], label: str = "target") -> str:
    """Write a box in the reference's fenced-JSON form (used by scripted policies and warm-starts)."""
    relative = all(abs(float(c)) <= 1.0 for c in coords)
    numbers = [round(float(c), 3) if relative else int(round(float(c))) for c in coords]
    payload = json.dumps([{"bbox_2d": numbers, "label": label}])
    return f"```json\n{payload}\n```"
