"""Answer extraction and grading."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgpo_env.grading import answer_reward, extract_boxed, grade, normalize_text

CHOICES = ["red", "blue", "green", "yellow"]


@pytest.mark.parametrize(
    "response, expected",
    [
        ("I think it's blue. \\boxed{B}", "B"),
        ("\\boxed{A} no wait \\boxed{C}", "C"),  # the last boxed answer counts
        ("\\boxed{(D)}", "D"),
        ("\\boxed{ b }", "B"),
        ("\\boxed{\\text{B}}", "B"),
        ("\\boxed{B. blue}", "B"),
        ("\\boxed{green}", "C"),  # the option's text
        ("The answer is (C).", "C"),
        ("Answer: D", "D"),
        ("Final answer - a", "A"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B", "B"),
        ("C) green", "C"),
        ("after a close look it is (D).", "D"),
    ],
)
def test_letter_forms(response, expected):
    result = grade(response, expected, CHOICES)
    assert result.answer == expected and result.correct


@pytest.mark.parametrize(
    "response",
    [
        "A cat sits on the mat",  # a capital at the start is no option
        "I cannot tell.",
        "\\boxed{}",
        "\\boxed{F}",  # not an option
        "\\boxed{purple}",
        "",
    ],
)
def test_no_valid_letter_is_wrong(response):
    assert not grade(response, "A", CHOICES).correct


def test_wrong_letter_is_wrong():
    result = grade("\\boxed{A}", "B", CHOICES)
    assert result.answer == "A" and not result.correct


def test_only_the_models_text_is_graded():
    # The env's answer-turn prompt contains "\boxed{}"; the model's reply alone has no answer.
    prompt = "put the letter of the correct option inside \\boxed{}"
    assert not grade("I am not sure", "A", CHOICES).correct
    assert extract_boxed(prompt) == ""


@pytest.mark.parametrize(
    "response, truth",
    [
        ("\\boxed{Three}", "3"),
        ("\\boxed{the Eiffel Tower!}", "eiffel tower"),
        ("\\boxed{  2  }", "two"),
        ("Answer: an apple", "Apple"),
    ],
)
def test_free_form_answers_are_normalised(response, truth):
    assert grade(response, truth).correct


def test_free_form_wrong():
    assert not grade("\\boxed{four}", "3").correct


def test_nested_braces():
    assert extract_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{unclosed") is None


def test_trl_reward_signature_with_chat_completions():
    completions = [
        [{"role": "assistant", "content": "\\boxed{B}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{C}"}]}],
        "\\boxed{blue}",
    ]
    rewards = answer_reward(["p"] * 3, completions, answer=["B", "B", "B"], choices=[CHOICES] * 3)
    assert rewards == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="answers"):
        answer_reward(["p"], ["\\boxed{A}"], answer=[])


@given(st.text(max_size=400))
def test_grading_never_crashes(text):
    result = grade(text, "A", CHOICES)
    assert result.correct == (result.answer == "A")


@given(st.sampled_from(CHOICES), st.text(alphabet=" .,!", max_size=5))
def test_option_text_with_punctuation_maps_to_its_letter(choice, noise):
    letter = "ABCD"[CHOICES.index(choice)]
    assert grade(f"\\boxed{{{noise}{choice.upper()}{noise}}}", letter, CHOICES).correct


def test_normalize_text_examples():
    assert normalize_text("The  Answer, is: TWENTY!") == "answer is 20"
    assert normalize_text("A") == "a"
