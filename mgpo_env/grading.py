"""Grade a final answer. Pure functions, no environment state.

The reward of the method is binary: 1.0 when the model's final answer equals the
ground truth, else 0.0. Only text the *model* generated is graded: the prompt the
environment inserts for the answer turn mentions ``\\boxed{}`` itself, so grading
a whole transcript would read the environment's words.

Answer extraction, first match wins:

1. the content of the **last** ``\\boxed{...}`` (nested braces allowed);
2. ``Answer: B`` / ``answer is (B)`` / ``Final answer - B``;
3. a lone option letter: ``(B)``, ``B.``, ``B)`` or just ``B``, as the whole
   reply or at its start/end.

With choices, the extracted text is reduced to a letter: ``"B"``, ``"(B)"``,
``"B. red"`` and the option's text itself (``"red"``) all become ``"B"``.
Without choices (free-form answers) both sides are normalised: case, articles,
punctuation, white space, and number words ("three" -> "3").

Example:
    >>> grade("The crop shows a red cup. \\\\boxed{B}", "B", ["blue", "red"]).correct
    True
    >>> grade("\\\\boxed{Three} apples", "3").correct
    True
    >>> answer_reward(["q"], ["\\\\boxed{A}", "\\\\boxed{C}"], answer=["A", "A"])
    [1.0, 0.0]
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Optional, Sequence

LETTERS = string.ascii_uppercase
MAX_GRADE_CHARS = 50_000

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16",
    "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
}
_ARTICLES = {"a", "an", "the"}
_ANSWER_IS = re.compile(
    r"(?:final\s+)?answer\s*(?:is|:|-|=)?\s*(?:option\s+)?\(?([A-Za-z])\)?(?![A-Za-z])", re.IGNORECASE
)
_ANSWER_LINE = re.compile(r"(?:final\s+)?answer\s*(?:is|:|-|=)\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
# "B" or "(B)." as the whole reply; "B. red", "(B) red", "B) red" at its start;
# "... so it is (B)." at its end. A bare capital at the start is not enough:
# "A cat sits on the mat" names no option.
_LETTER_PATTERNS = (
    re.compile(r"^\s*(?:option\s+)?\(?([A-Z])\)?[.)]?\s*$"),
    re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])"),
    re.compile(r"\(([A-Z])\)\s*[.!]?\s*$"),
)


@dataclass(frozen=True)
class GradeResult:
    """The outcome of grading one response."""

    correct: bool
    answer: Optional[str]  # what was extracted (a letter when choices were given)
    raw: Optional[str] = None  # the extracted text before reduction to a letter


def extract_boxed(text: str) -> Optional[str]:
    r"""Content of the last ``\boxed{...}`` in ``text`` (braces balanced), or ``None``.

    >>> extract_boxed(r"first \boxed{A} then \boxed{\text{B}}")
    '\\text{B}'
    """
    text = text[-MAX_GRADE_CHARS:]
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j]
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def _strip_latex(text: str) -> str:
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", text)
    return text.replace("$", "").strip()


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, spell numbers as digits, fold spaces.

    >>> normalize_text("  The THREE red Apples! ")
    '3 red apples'
    """
    text = _strip_latex(text).lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split()]
    content = [w for w in words if w not in _ARTICLES]
    # A lone "A" is an option letter, not an article: keep it when nothing else is left.
    return " ".join(content or words)


def extract_answer_text(text: str, *, free_form: bool = False) -> Optional[str]:
    """The model's final answer as written (before reduction to a letter), or ``None``.

    With ``free_form=True`` an unboxed ``Answer: ...`` yields the rest of its line
    instead of a single letter.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return _strip_latex(boxed)
    tail = text[-MAX_GRADE_CHARS:]
    if free_form:
        lines = list(_ANSWER_LINE.finditer(tail))
        if lines:
            return lines[-1].group(1).strip()
    matches = list(_ANSWER_IS.finditer(tail))
    if matches:
        return matches[-1].group(1)
    stripped = tail.strip()
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(stripped)
        if match:
            return next(group for group in match.groups() if group)
    return None


def to_choice_letter(answer: str, choices: Sequence[str]) -> Optional[str]:
    """Reduce an extracted answer to the letter of one of ``choices``, or ``None``.

    >>> to_choice_letter("(b) the red one", ["blue", "red"])
    'B'
    >>> to_choice_letter("Red", ["blue", "red"])
    'B'
    """
    letters = LETTERS[: len(choices)]
    candidate = answer.strip()
    match = re.match(r"^\(?([A-Za-z])\)?(?:[.:)\s]|$)", candidate)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    wanted = normalize_text(candidate)
    if wanted:
        for letter, choice in zip(letters, choices):
            if normalize_text(choice) == wanted:
                return letter
    return None


def grade(response: str, answer: str, choices: Optional[Sequence[str]] = None) -> GradeResult:
    """Grade one model response against the ground truth.

    Args:
        response: text the model generated in its final turn (never the prompt).
        answer: the ground truth: a letter when ``choices`` are given, else free text.
        choices: the option texts in order (A, B, ...), or ``None`` for free-form answers.
    """
    if not isinstance(response, str):
        raise TypeError(f"grade expects the response as str, got {type(response).__name__}")
    raw = extract_answer_text(response, free_form=not choices)
    if raw is None:
        return GradeResult(False, None, None)
    if choices:
        letter = to_choice_letter(raw, choices)
        truth = answer.strip().upper()
        if len(truth) != 1:  # ground truth given as option text
            truth = to_choice_letter(answer, choices) or truth
        return GradeResult(letter is not None and letter == truth, letter, raw)
    parsed = normalize_text(raw)
    return GradeResult(parsed != "" and parsed == normalize_text(answer), parsed, raw)


def _completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a list of chat messages (last assistant one)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                content = message.get("content", "")
                if isinstance(content, list):
                    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
                return str(content)
    return str(completion)


def answer_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str],
    choices: Optional[Sequence[Optional[Sequence[str]]]] = None,
    **kwargs: Any,
) -> list[float]:
    """A reward function with TRL's signature ``(prompts, completions, **columns) -> list[float]``.

    ``answer`` (and optionally ``choices``) arrive as dataset columns, one entry
    per completion. The reward is 1.0 for a correct final answer, else 0.0.
    """
    if len(answer) != len(completions):
        raise ValueError(f"answer_reward got {len(completions)} completions but {len(answer)} answers")
    rewards = []
    for i, completion in enumerate(completions):
        options = choices[i] if choices is not None else None
        rewards.append(1.0 if grade(_completion_text(completion), answer[i], options).correct else 0.0)
    return rewards
