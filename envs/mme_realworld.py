"""MME-RealWorld (and MME-RealWorld-Lite) from its JSON list (``dataset="mme-realworld:FILE"``).

The file is one JSON list of records::

    {"Question_id": "perception/remote_sensing/color/0001",
     "Image": "remote_sensing/03553_Toronto.png",
     "Text": "What color is the roof of the building in the top left corner?",
     "Question Type": "Multiple Choice",
     "Answer choices": ["(A) red", "(B) blue", "(C) green", "(D) white", "(E) The image does not feature the roof."],
     "Ground truth": "B",
     "Task": "Perception", "Subtask": "Remote Sensing", "Category": "color"}

* ``Image`` is relative to the JSON file's folder, or to ``image_root``; it may not
  leave that folder (no absolute paths, ``..`` or symlinks out of it).
* ``Text`` is the question alone in the published files (the official evaluation
  script appends the options itself). Should a copy carry the options inside the
  text (``"(A) ..."`` lines, "The choices are listed below:"), they are cut off, so
  ``question`` never repeats the options.
* ``Answer choices`` lose their ``"(A) "`` prefixes (the letter must match the
  position); ``Ground truth`` is the answer letter.
* ``category`` is ``"Subtask/Category"`` by default (``"Remote Sensing/color"``):
  the fine-grained cells the benchmark reports; ``Category`` alone mixes domains
  ("count" exists in several). ``category_from`` picks another field; ``Task``,
  ``Subtask``, ``Category`` and ``Question Type`` are always kept in ``metadata``.
* the sample id is ``str(Question_id)``.

Example:
    >>> data = load_mme_realworld("/data/MME-RealWorld/MME_RealWorld.json")   # doctest: +SKIP
    >>> data[0].question, data[0].choices[:2], data[0].answer, data[0].category  # doctest: +SKIP
    ('What color is the roof ...?', ('red', 'blue'), 'B', 'Remote Sensing/color')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from .sample import DataError, Sample

from .dataset_base import (
    FileImage,
    LoadedDataset,
    RowCollector,
    check_on_error,
    image_root_for,
    name_row,
    optional_str,
    parse_answer_letter,
    read_json,
    resolve_image_path,
    split_question_and_options,
    strip_option_prefix,
)

CategoryFrom = Literal["subtask/category", "category", "subtask", "task", "task/subtask"]
CATEGORY_FROM: tuple[str, ...] = ("subtask/category", "category", "subtask", "task", "task/subtask")


def load_mme_realworld(
    json_file: Union[str, Path],
    image_root: Optional[Union[str, Path]] = None,
    *,
    on_error: str = "raise",
    category_from: str = "subtask/category",
    check_files: bool = True,
) -> LoadedDataset:
    """Load MME-RealWorld's JSON list (see the module docstring).

    Args:
        json_file: the JSON file (a list of records).
        image_root: the folder ``Image`` paths are relative to (default: the JSON file's folder).
        on_error: ``"raise"`` or ``"skip"`` bad rows (see :mod:`mgpo_datasets.dataset_base`).
        category_from: which fields make ``Sample.category`` (one of :data:`CATEGORY_FROM`).
        check_files: ``stat`` every image at load time so a missing one fails now.
    """
    check_on_error(on_error)
    if category_from not in CATEGORY_FROM:
        raise ValueError(f"category_from must be one of {', '.join(CATEGORY_FROM)}, got {category_from!r}")
    path = Path(json_file)
    records = read_json(path, "MME-RealWorld file", list, "a JSON list of records")
    root = image_root_for(path, image_root)
    collector = RowCollector(str(path), on_error=on_error, spec=f"mme-realworld:{path}")
    for index, record in enumerate(records):
        where = name_row(f"{path}, record {index}", record, "Question_id")
        collector.add(where, _record, record, index, root, where, category_from, check_files)
    return collector.finish()


def _record(record: Any, index: int, root: Path, where: str, category_from: str, check_files: bool) -> Sample:
    if not isinstance(record, dict):
        raise DataError(f"a record must be a JSON object, got {type(record).__name__}")
    image_path = resolve_image_path(root, record["Image"], where, check_exists=check_files)
    text = record["Text"]
    if not isinstance(text, str):
        raise DataError(f"'Text' must be a string, got {type(text).__name__}")
    question, options_in_text = split_question_and_options(text)
    raw_choices = record.get("Answer choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise DataError(f"'Answer choices' must be a non-empty list, got {raw_choices!r}")
    choices = tuple(strip_option_prefix(choice, i) for i, choice in enumerate(raw_choices))
    answer = parse_answer_letter(record.get("Ground truth"))
    task = optional_str(record.get("Task"))
    subtask = optional_str(record.get("Subtask"))
    category = optional_str(record.get("Category"))
    question_id = record.get("Question_id")
    return Sample(
        sample_id=str(question_id) if question_id is not None and str(question_id) else f"record-{index}",
        image=FileImage(image_path, where),
        question=question,
        answer=answer,
        choices=choices,
        category=_category(category_from, task, subtask, category),
        metadata={
            "source": "mme-realworld",
            "question_id": question_id,
            "image_path": record["Image"],
            "task": task,
            "subtask": subtask,
            "category": category,
            "question_type": optional_str(record.get("Question Type")),
            "options_in_text": bool(options_in_text),
        },
    )


def _category(category_from: str, task: Optional[str], subtask: Optional[str], category: Optional[str]) -> Optional[str]:
    parts = {
        "subtask/category": (subtask, category),
        "task/subtask": (task, subtask),
        "category": (category,),
        "subtask": (subtask,),
        "task": (task,),
    }[category_from]
    present = [p for p in parts if p]
    return "/".join(present) if present else None
