"""Every prompt the environment writes, in one place.

The texts are plain ``str.format`` templates with named fields, so a user can
replace any of them (``gym.make(..., templates=PromptTemplates(system_two_turn=...))``)
without touching the environment. Fields available to the templates:

* ``{question}``: the question without options;
* ``{options}``: the lettered options, one a line (empty for free-form questions);
* ``{answer_instruction}``: how to state the final answer (letter or free text);
* ``{frame}``: what the box coordinates mean (depends on the box frame);
* ``{max_turns}``, ``{turns_left}``: free mode's turn budget;
* ``{reason}``: why a box was rejected.

The two-turn texts follow the published protocol: the first turn asks only for
the key region (the options are withheld), the second shows the crop and the
question *with* its options and asks for the letter in ``\\boxed{}``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields
from typing import Mapping, Optional, Sequence

from .geometry import check_frame

FRAME_DESCRIPTIONS = {
    "pixel": "absolute pixel positions in the image you were shown (x to the right, y down, origin at the top-left corner)",
    "norm1000": "positions on a 0-1000 scale of the image's width and height (origin at the top-left corner)",
    "relative": "fractions from 0 to 1 of the image's width and height (origin at the top-left corner)",
}

BOX_EXAMPLE = '```json\n[{{"bbox_2d": [x1, y1, x2, y2], "label": "what is there"}}]\n```'


def format_options(choices: Optional[Sequence[str]]) -> str:
    """Letter the options one a line: ``(A) red\\n(B) blue``.

    >>> format_options(["red", "blue"])
    '(A) red\\n(B) blue'
    """
    if not choices:
        return ""
    return "\n".join(f"({string.ascii_uppercase[i]}) {choice}" for i, choice in enumerate(choices))


@dataclass(frozen=True)
class PromptTemplates:
    """The environment's prompt texts (see the module docstring for the fields)."""

    system_two_turn: str = (
        "You answer questions about high-resolution images. The image you are shown first is "
        "shrunk, so small details in it may be unreadable. Work in two replies.\n"
        "Reply 1: give the coordinates of the one image region that holds what the question is "
        "about, as JSON in a code block, and stop:\n" + BOX_EXAMPLE + "\n"
        "Coordinates are {frame}. That region is then cut out of the full-resolution original, "
        "enlarged and shown to you.\n"
        "Reply 2: look at both images, reason step by step, and {answer_instruction}."
    )
    user_grounding: str = (
        "{question}\nGive the coordinates of the key image region for this question as JSON."
    )
    user_after_crop: str = (
        "Here is the region you chose, cut from the original image and enlarged.\n"
        "Question: {question}\n{options}\n"
        "Analyse both images step by step, then {answer_instruction}."
    )
    user_after_invalid_box: str = (
        "Those coordinates were not valid ({reason}), so here is the whole image again.\n"
        "Question: {question}\n{options}\n"
        "Analyse the image step by step, then {answer_instruction}."
    )
    system_free: str = (
        "You answer questions about high-resolution images. The image you are shown first is "
        "shrunk, so small details in it may be unreadable. In each reply do exactly one of two things:\n"
        "- ask to see a region enlarged: give its coordinates as JSON in a code block and stop:\n"
        + BOX_EXAMPLE + "\n  Coordinates are {frame}. The region is cut out of the full-resolution "
        "original and shown to you;\n"
        "- or answer: reason briefly, then {answer_instruction}.\n"
        "You have at most {max_turns} replies; the last one must be your answer."
    )
    user_free_first: str = "Question: {question}\n{options}\nGive a region to inspect, or your final answer."
    user_free_after_crop: str = (
        "Here is the region you chose, cut from the original image and enlarged. "
        "{turns_left} replies left: give another region or your final answer."
    )
    user_free_after_invalid_box: str = (
        "Those coordinates were not valid ({reason}), so no region was cut. "
        "{turns_left} replies left: give a valid region or your final answer."
    )
    user_free_last_turn: str = "This is your last reply: {answer_instruction} now."
    system_single_turn: str = "You answer questions about images. Reason step by step, then {answer_instruction}."
    user_single_turn: str = "Question: {question}\n{options}\nAnalyse the image step by step, then {answer_instruction}."
    answer_instruction_choices: str = "put the letter of the correct option inside \\boxed{{}}"
    answer_instruction_free_form: str = "put your final answer inside \\boxed{{}}"

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, str):
                raise TypeError(f"PromptTemplates.{field.name} must be a str, got {type(value).__name__}")
            try:
                value.format(**_PROBE_FIELDS)
            except (KeyError, IndexError, ValueError) as error:
                raise ValueError(
                    f"PromptTemplates.{field.name} has a bad placeholder ({error!r}); "
                    f"allowed fields: {', '.join(sorted(_PROBE_FIELDS))}; write literal braces as {{{{ }}}}"
                ) from None

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str]) -> "PromptTemplates":
        """The default templates with some fields replaced; unknown names are refused.

        >>> PromptTemplates.with_overrides({"user_grounding": "{question}"}).user_grounding
        '{question}'
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown template field(s) {unknown}; the fields are: {', '.join(sorted(known))}")
        return cls(**dict(overrides))

    def render(self, name: str, *, question: str = "", choices: Optional[Sequence[str]] = None, frame: str = "pixel", **extra: object) -> str:
        """Fill template ``name`` for one question. Blank lines left by empty fields are dropped."""
        check_frame(frame)
        instruction = self.answer_instruction_choices if choices else self.answer_instruction_free_form
        values = dict(_PROBE_FIELDS)
        values.update(
            question=question.strip(),
            options=format_options(choices),
            answer_instruction=instruction.format(),
            frame=FRAME_DESCRIPTIONS[frame],
        )
        values.update(extra)
        text = getattr(self, name).format(**values)
        # An empty field (no options for a free-form question) leaves a blank line behind.
        return "\n".join(line for line in text.split("\n") if line.strip())


_PROBE_FIELDS = {
    "question": "",
    "options": "",
    "answer_instruction": "",
    "frame": "",
    "max_turns": 0,
    "turns_left": 0,
    "reason": "",
}
