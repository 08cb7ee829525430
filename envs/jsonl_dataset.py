"""Your own data as JSON Lines, one sample a line (``dataset="jsonl:FILE"``).

Schema of a line (a JSON object):

=================  ========  =====================================================
key                required  meaning
=================  ========  =====================================================
``image``          yes       image path relative to the JSONL file's folder (or to
                             ``image_root``); it may not leave that folder
``question``       yes       the question, without the options
``answer``         yes       the option letter (``"B"``) when ``choices`` is given,
                             else the free-text answer
``choices``        no        list of option texts, in order A, B, C, ...
``boxes``          no        annotated boxes ``[[x1, y1, x2, y2], ...]`` in original
                             pixels (one box ``[x1, y1, x2, y2]`` is accepted too)
``bbox_xywh``      no        the same as ``[x, y, w, h]`` (COCO / V* style)
``id``             no        unique sample id (default ``"STEM:LINE"``, e.g. ``"train:12"``)
``category``       no        category name for per-category metrics
``metadata``       no        an object copied into ``Sample.metadata``
=================  ========  =====================================================

Any other key is kept in ``metadata`` too. Blank lines are ignored.

Example (``data/train.jsonl`` with ``data/images/0001.jpg``)::

    {"id": "q1", "image": "images/0001.jpg", "question": "What is written on the sign?", "answer": "STOP"}
    {"image": "images/0002.jpg", "question": "What color is the car?", "choices": ["red", "blue"],
     "answer": "B", "boxes": [[120, 40, 380, 210]], "category": "color"}

(each object on one line) and then::

    >>> data = load_jsonl("data/train.jsonl")                       # doctest: +SKIP
    >>> data[data.index_of("train:2")].answer_text                  # doctest: +SKIP
    'blue'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from .sample import DataError, Sample

from .dataset_base import (
    FileImage,
    LoadedDataset,
    RowCollector,
    check_on_error,
    image_root_for,
    optional_str,
    parse_boxes,
    read_json_lines,
    require_file,
    resolve_image_path,
)

KNOWN_KEYS = frozenset({"image", "question", "answer", "choices", "boxes", "bbox_xywh", "id", "category", "metadata"})


def load_jsonl(
    file: Union[str, Path],
    *,
    on_error: str = "raise",
    image_root: Optional[Union[str, Path]] = None,
    check_files: bool = True,
) -> LoadedDataset:
    """Load a JSONL file in the schema of the module docstring.

    Args:
        file: the ``.jsonl`` file.
        on_error: ``"raise"`` or ``"skip"`` bad rows (see :mod:`mgpo_datasets.dataset_base`).
        image_root: the folder image paths are relative to (default: the file's folder).
        check_files: ``stat`` every image at load time so a missing one fails now.
    """
    check_on_error(on_error)
    path = Path(file)
    require_file(path, "JSONL file")
    root = image_root_for(path, image_root)
    collector = RowCollector(str(path), on_error=on_error, spec=f"jsonl:{path}")
    for line_number, where, row in read_json_lines(path, collector, "id"):
        collector.add(where, _row, row, root, f"{path.stem}:{line_number}", where, check_files)
    return collector.finish()


def _row(row: Any, root: Path, default_id: str, where: str, check_files: bool) -> Sample:
    if not isinstance(row, dict):
        raise DataError(f"a line must hold a JSON object, got {type(row).__name__}")
    image = resolve_image_path(root, row["image"], where, check_exists=check_files)
    question = row["question"]
    if "answer" not in row or row["answer"] is None:
        raise DataError("the answer is missing")
    answer = row["answer"]
    if not isinstance(answer, str):
        raise DataError(f"the answer must be a string (an option letter or free text), got {answer!r}")
    choices = row.get("choices") or ()
    if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
        raise DataError(f"'choices' must be a list of strings, got {choices!r}")
    if "boxes" in row and "bbox_xywh" in row:
        raise DataError("give either 'boxes' (x1, y1, x2, y2) or 'bbox_xywh', not both")
    boxes = parse_boxes(row["bbox_xywh"], "xywh") if "bbox_xywh" in row else parse_boxes(row.get("boxes"), "xyxy")
    metadata = dict(row["metadata"]) if isinstance(row.get("metadata"), dict) else {}
    metadata.update({k: v for k, v in row.items() if k not in KNOWN_KEYS})
    metadata.setdefault("source", "jsonl")
    metadata.setdefault("image_path", row["image"])
    sample_id = row.get("id")
    return Sample(
        sample_id=str(sample_id) if sample_id is not None and str(sample_id) else default_id,
        image=FileImage(image, where),
        question=question.strip() if isinstance(question, str) else question,
        answer=answer,
        choices=tuple(c.strip() for c in choices),
        target_boxes=boxes,
        category=optional_str(row.get("category")),
        metadata=metadata,
    )
