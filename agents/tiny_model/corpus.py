"""The built-in English corpus that the tiny byte-level BPE tokenizer is trained on.

The word list lives in ``corpus_words.txt`` beside this module (whitespace
separated, order and repeats kept: they set the corpus for a given seed); the
sentences stay here, as one of them holds a newline.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

__all__ = ["builtin_corpus"]

_SENTENCES = (
    "What is the color of the car on the left?",
    "Which option best describes the sign in the image?",
    "How many people are standing near the door?",
    "What is written on the small board in the upper right corner?",
    "Answer with the option's letter from the given choices directly.",
    "Please provide the bounding box coordinates of the region that can help you answer the question better.",
    "Output the bounding box in JSON format.",
    "Locate the region of the image that contains the answer.",
    "Here is the cropped region of the image.",
    "The answer is \\boxed{A}.",
    "The final answer is \\boxed{B}.",
    "So the answer is \\boxed{C}.",
    "Therefore the answer is \\boxed{D}.",
    "Thus the answer is \\boxed{E}.",
    "Options: (A) red (B) blue (C) green (D) yellow (E) black",
    "A. red\nB. blue\nC. green\nD. yellow\nE. white",
    "You are a helpful assistant.",
    "First find the relevant region, then answer the question.",
    "The text is too small to read, so I will zoom in.",
    "Hello world! Hello, world. hello World?",
    "It's a cat. It isn't a dog. They're here; we've seen it, I'm sure, you'll see, he'd know.",
)


def _word_list() -> list[str]:
    """The word list of ``corpus_words.txt``, read on use so importing the package reads no corpus."""
    return Path(__file__).with_name("corpus_words.txt").read_text(encoding="utf-8").split()


def builtin_corpus(seed: int = 0, n_lines: int = 3000) -> list[str]:
    """A small English corpus for training the tiny tokenizer: words, digits,
    JSON boxes like ``[{"bbox_2d": [12, 34, 56, 78], "label": "x"}]``,
    ``\\boxed{A}`` answers and A-E options. Deterministic for a given seed."""
    word_list = _word_list()
    rng = random.Random(seed)
    lines: list[str] = list(_SENTENCES) * 20
    lines.append(" ".join(word_list))
    lines.append(" ".join(w.capitalize() for w in word_list))
    lines.append(" ".join(str(i) for i in range(1000)))
    for _ in range(n_lines):
        kind = rng.random()
        if kind < 0.55:
            words = [rng.choice(word_list) for _ in range(rng.randint(5, 16))]
            words[0] = words[0].capitalize()
            lines.append(" ".join(words) + rng.choice([".", "?", "!", ",", ":"]))
        elif kind < 0.8:
            box = [rng.randint(0, 4000) for _ in range(4)]
            label = rng.choice(word_list)
            lines.append(json.dumps([{"bbox_2d": box, "label": label}]))
        elif kind < 0.9:
            letter = rng.choice("ABCDE")
            lines.append(rng.choice(["The answer is ", "Answer: ", "", "So "]) + f"\\boxed{{{letter}}}")
        else:
            opts = rng.sample(word_list, 5)
            lines.append(" ".join(f"({c}) {w}" for c, w in zip("ABCDE", opts)))
    return lines
