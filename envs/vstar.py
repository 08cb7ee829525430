"""V* Bench in its published folder layout (``dataset="vstar:DIR"``).

Layout::

    DIR/
      direct_attributes/   sa_4690.jpg  sa_4690.json  ...   (115 questions, 4 options)
      relative_position/   sa_1234.jpg  sa_1234.json  ...   (76 questions, 2 options)
      test_questions.jsonl                                  (optional)

Each ``NAME.json`` holds ``target_object`` (names), ``bbox`` (a list of
``[x, y, w, h]`` in original pixels, one per target object), ``question`` and
``options`` (the *first* option is the correct one).

Where the questions come from:

* if ``test_questions.jsonl`` exists, each of its rows (``image`` path relative to
  DIR, or a bare file name inside the ``category`` folder; ``text``, ``category``,
  ``question_id``, ``label``) gives one sample: ``text`` is
  the question, the lettered option lines and an instruction to answer with the
  letter; the option lines are parsed out, so ``question`` holds the question only
  and ``choices`` the options in the benchmark's order, and ``label`` is the answer
  letter. Boxes come from the image's ``NAME.json``.
* otherwise each ``NAME.json`` gives one sample with ``choices = options`` in file
  order, so **the correct answer is always "A"** in this fallback. A model can
  learn that bias; pass ``shuffle_choices_seed=N`` to permute the options of every
  sample deterministically (the same permutation for a sample on every run).

Boxes become ``(x1, y1, x2, y2)``; ``category`` is the folder name; sample ids are
the image path without its suffix (``"direct_attributes/sa_4690"``).

Example:
    >>> data = load_vstar("/data/vstar_bench")                      # doctest: +SKIP
    >>> s = data[data.index_of("direct_attributes/sa_4690")]        # doctest: +SKIP
    >>> s.question, s.choices, s.answer, s.target_boxes             # doctest: +SKIP
    ('What is the color of the clock?', ('green', 'yellow', 'white', 'black'), 'A', ((1120.0, 840.0, 1170.0, 905.0),))
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

from .image_files import resolve_inside
from .sample import DataError, Sample

from .dataset_base import (
    FileImage,
    LoadedDataset,
    RowCollector,
    check_on_error,
    parse_answer_letter,
    parse_boxes,
    read_json,
    read_json_lines,
    resolve_image_path,
    shuffle_choices,
    split_question_and_options,
)

CATEGORIES: tuple[str, ...] = ("direct_attributes", "relative_position")
QUESTIONS_FILE = "test_questions.jsonl"
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def load_vstar(
    directory: Union[str, Path],
    *,
    on_error: str = "raise",
    shuffle_choices_seed: Optional[int] = None,
    use_questions_file: bool = True,
    check_files: bool = True,
) -> LoadedDataset:
    """Load V* Bench from ``directory`` (see the module docstring).

    Args:
        directory: the folder holding ``direct_attributes/`` and ``relative_position/``.
        on_error: ``"raise"`` or ``"skip"`` bad rows (see :mod:`mgpo_datasets.dataset_base`).
        shuffle_choices_seed: permute each sample's options deterministically
            (``None``: keep the source order; in the per-image-JSON fallback the
            correct answer is then always "A").
        use_questions_file: read ``test_questions.jsonl`` when present (``False``
            rebuilds the questions from the per-image JSON files).
        check_files: ``stat`` every image at load time so a missing one fails now.
    """
    check_on_error(on_error)
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"V* Bench folder {str(root)!r} does not exist or is not a directory")
    questions = root / QUESTIONS_FILE
    folders = [name for name in CATEGORIES if (root / name).is_dir()]
    if use_questions_file and questions.is_file():
        collector = RowCollector(str(questions), on_error=on_error, spec=f"vstar:{root}")
        _from_questions_file(root, questions, collector, shuffle_choices_seed, check_files)
    else:
        if not folders:
            raise DataError(
                f"{str(root)!r} is not a V* Bench folder: it has neither {' nor '.join(f'{c}/' for c in CATEGORIES)} "
                f"nor {QUESTIONS_FILE}"
            )
        collector = RowCollector(str(root), on_error=on_error, spec=f"vstar:{root}")
        for folder in folders:
            _from_annotations(root, folder, collector, shuffle_choices_seed, check_files)
    return collector.finish()


def _from_questions_file(
    root: Path, questions: Path, collector: RowCollector, seed: Optional[int], check_files: bool
) -> None:
    used_ids: set[str] = set()
    for _, where, row in read_json_lines(questions, collector, "question_id"):
        collector.add(where, _question_row, root, row, where, used_ids, seed, check_files)


def _question_row(
    root: Path, row: Any, where: str, used_ids: set[str], seed: Optional[int], check_files: bool
) -> Sample:
    if not isinstance(row, dict):
        raise DataError(f"a row must be a JSON object, got {type(row).__name__}")
    relative = row["image"]
    category = row.get("category")
    if (isinstance(relative, str) and isinstance(category, str) and "/" not in relative
            and not (root / relative).exists() and (root / category / relative).exists()):
        relative = f"{category}/{relative}"  # a bare file name: look in the category's folder
    path = resolve_image_path(root, relative, where, check_exists=check_files)
    text = row["text"]
    if not isinstance(text, str) or not text.strip():
        raise DataError("'text' is empty")
    question, choices = split_question_and_options(text)
    if not choices:
        raise DataError("'text' has no lettered option lines such as '(A) ...'")
    answer = parse_answer_letter(row.get("label"))
    category = category or PurePosixPath(relative).parts[0]
    sample_id = str(PurePosixPath(relative).with_suffix(""))
    if sample_id in used_ids:  # several questions about one image: keep ids unique
        sample_id = f"{sample_id}#{row.get('question_id')}"
    # The annotation sits next to the image as given (not next to a symlink's target).
    annotation = _read_annotation(resolve_inside(root, str(PurePosixPath(relative).with_suffix(".json"))), required=False)
    boxes = parse_boxes(annotation.get("bbox"), "xywh") if annotation else ()
    if seed is not None:
        choices, answer = shuffle_choices(choices, answer, seed, sample_id)
    sample = Sample(
        sample_id=sample_id,
        image=FileImage(path, where),
        question=question,
        answer=answer,
        choices=choices,
        target_boxes=boxes,
        category=str(category),
        metadata={
            "source": "vstar",
            "question_id": row.get("question_id"),
            "image_path": relative,
            "target_object": list(annotation.get("target_object") or []) if annotation else [],
            "choices_from": QUESTIONS_FILE,
        },
    )
    used_ids.add(sample_id)
    return sample


def _from_annotations(root: Path, folder: str, collector: RowCollector, seed: Optional[int], check_files: bool) -> None:
    directory = root / folder
    entries = sorted(directory.iterdir())
    images = {p.stem: p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES}
    annotations = [p for p in entries if p.suffix.lower() == ".json"]
    for json_path in annotations:
        where = str(json_path)
        collector.add(where, _annotation_row, root, folder, json_path, images.get(json_path.stem), where, seed, check_files)
    annotated = {p.stem for p in annotations}
    for stem, image in sorted(images.items()):
        if stem not in annotated:
            collector.reject(str(image), f"image has no {stem}.json annotation next to it")


def _annotation_row(
    root: Path, folder: str, json_path: Path, image: Optional[Path], where: str, seed: Optional[int], check_files: bool
) -> Sample:
    annotation = _read_annotation(json_path, required=True)
    assert annotation is not None  # required=True raises instead of returning None
    if image is None:
        raise DataError(f"no image {json_path.stem}.jpg (or .png, ...) next to the annotation")
    relative = f"{folder}/{image.name}"
    # resolve_inside refuses an image that is a symlink to a file outside the dataset.
    path = resolve_inside(root, relative)
    if check_files and not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist")
    question = annotation["question"]
    options = annotation["options"]
    if not isinstance(options, list) or not options:
        raise DataError(f"'options' must be a non-empty list, got {options!r}")
    choices = tuple(str(o).strip() for o in options)
    answer = "A"  # V*'s convention: the first option is the correct one
    sample_id = f"{folder}/{json_path.stem}"
    if seed is not None:
        choices, answer = shuffle_choices(choices, answer, seed, sample_id)
    return Sample(
        sample_id=sample_id,
        image=FileImage(path, where),
        question=str(question).strip() if isinstance(question, str) else question,
        answer=answer,
        choices=choices,
        target_boxes=parse_boxes(annotation.get("bbox"), "xywh"),
        category=folder,
        metadata={
            "source": "vstar",
            "question_id": None,
            "image_path": relative,
            "target_object": list(annotation.get("target_object") or []),
            "choices_from": "annotation",
        },
    )


def _read_annotation(path: Path, *, required: bool) -> Optional[dict[str, Any]]:
    """The image's ``NAME.json``; ``None`` when it is absent and not ``required``.

    With a questions file the annotation only adds boxes, so a question without
    one is still a usable sample.
    """
    if not required and not path.is_file():
        return None
    return read_json(path, "annotation", dict)
