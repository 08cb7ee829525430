"""A Hugging Face ``datasets.Dataset`` as environment data (``dataset="hf:DIR"`` or a Dataset object).

Accepts a ``datasets.Dataset`` (or ``DatasetDict`` with ``split=``) or a local
folder written by ``save_to_disk`` (read with ``datasets.load_from_disk``; nothing
is downloaded). Column names are configurable:

=====================  ===================================================================
column (default name)  content
=====================  ===================================================================
``image``              a ``datasets.Image`` feature, a struct ``{"bytes", "path"}``,
                       raw bytes, or a path string
``question``           the question without options
``answer``             an option letter, an option index (int), an option's exact text,
                       or the free-text answer when there are no choices
``choices``            optional: list of option texts (or a JSON string of one)
``id``                 optional: unique sample id (default: the row number, ``"17"``)
``category``           optional: category name
``boxes``              optional: list of boxes, ``[x1, y1, x2, y2]`` (or ``[x, y, w, h]``
                       with ``boxes_format="xywh"``)
=====================  ===================================================================

Other scalar columns are copied to ``metadata``.

Rows are read lazily: the loader reads every column *except* the image once (a
fast Arrow scan, to validate the rows up front); a sample's image is an
:class:`HFImage` callable that reads that one row's image cell when an episode
needs it, undecoded (``Image(decode=False)``), and opens it with Pillow.

Image paths: a relative path is resolved under ``image_root`` (default: the
``save_to_disk`` folder, or the working directory for a Dataset object) and may
not leave it. Absolute paths, which ``datasets`` itself stores for images cast
from local files, are accepted for a Dataset object you pass in (you built it),
but refused for a folder read from disk unless ``allow_absolute_paths=True``.

Example:
    >>> import datasets
    >>> from PIL import Image
    >>> ds = datasets.Dataset.from_dict({
    ...     "image": [Image.new("RGB", (640, 480))], "question": ["What is shown?"],
    ...     "choices": [["a cat", "a dog"]], "answer": [1]})
    >>> data = load_hf_dataset(ds)
    >>> data[0].answer, data[0].answer_text, data[0].image().size
    ('B', 'a dog', (640, 480))
"""

from __future__ import annotations

import io
import json
import os
import string
from pathlib import Path
from typing import Any, Optional, Union

from PIL import Image, UnidentifiedImageError

from .image_files import ImageLoadError, resolve_inside
from .sample import DataError, Sample

from .dataset_base import FileImage, LoadedDataset, RowCollector, check_on_error, name_row, optional_str, parse_boxes

DEFAULT_COLUMNS = {
    "image_column": "image",
    "question_column": "question",
    "answer_column": "answer",
    "choices_column": "choices",
    "id_column": "id",
    "category_column": "category",
    "boxes_column": "boxes",
}


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("Hugging Face datasets need the 'datasets' package: pip install 'mgpo[data]'") from error
    return datasets


def _image_path(value: str, root: Optional[Path], allow_absolute: bool, where: str) -> Path:
    if os.path.isabs(value):
        if not allow_absolute:
            raise DataError(
                f"image path {value!r} is absolute; paths of a dataset read from disk must be relative to "
                f"{str(root)!r} (pass allow_absolute_paths=True if you trust this dataset)"
            )
        return Path(value)
    return resolve_inside(root if root is not None else Path.cwd(), value)


class HFImage:
    """The image cell of one row of a Hugging Face dataset, read when called.

    ``view`` is the dataset reduced to its image column, with an Image feature's
    decoding turned off, so calling this reads one cell (bytes or a path) and
    opens it lazily with Pillow (only the header is read until ``.load()``).
    """

    def __init__(self, view: Any, column: str, index: int, root: Optional[Path], allow_absolute: bool, where: str) -> None:
        self.view = view
        self.column = column
        self.index = index
        self.root = root
        self.allow_absolute = allow_absolute
        self.where = where
        # decode_image() names a callable reference by its __qualname__.
        self.__qualname__ = f"the image cell of {where}"

    def __call__(self) -> Image.Image:
        value = self.view[self.index][self.column]
        data: Optional[bytes] = None
        path: Optional[str] = None
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str):
            path = value
        elif isinstance(value, Image.Image):
            return value
        try:
            if data:
                return Image.open(io.BytesIO(data))
            if path:
                file = _image_path(path, self.root, self.allow_absolute, self.where)
                return FileImage(file, self.where)()
        except DataError as error:
            raise ImageLoadError(f"{self.__qualname__}: {error}") from error
        except (OSError, UnidentifiedImageError) as error:
            raise ImageLoadError(f"{self.__qualname__}: not a readable image: {error}") from error
        raise ImageLoadError(f"{self.__qualname__}: the cell holds no image (got {type(value).__name__})")

    def __repr__(self) -> str:
        return f"HFImage(row {self.index}, column {self.column!r})"


def load_hf_dataset(
    dir_or_dataset: Any,
    image_column: str = "image",
    question_column: str = "question",
    answer_column: str = "answer",
    choices_column: Optional[str] = "choices",
    *,
    id_column: Optional[str] = "id",
    category_column: Optional[str] = "category",
    boxes_column: Optional[str] = "boxes",
    boxes_format: str = "xyxy",
    split: Optional[str] = None,
    image_root: Optional[Union[str, Path]] = None,
    allow_absolute_paths: Optional[bool] = None,
    on_error: str = "raise",
    check_files: bool = True,
) -> LoadedDataset:
    """Load a Hugging Face dataset (see the module docstring).

    Args:
        dir_or_dataset: a ``save_to_disk`` folder, a ``datasets.Dataset`` or a ``DatasetDict``.
        image_column, question_column, answer_column, choices_column, id_column,
        category_column, boxes_column: column names (optional ones may be ``None``
            or absent; an optional column you *rename* must exist).
        boxes_format: ``"xyxy"`` or ``"xywh"`` for the boxes column.
        split: which split of a ``DatasetDict`` (needed when it has several).
        image_root: folder that relative image paths are resolved under.
        allow_absolute_paths: accept absolute image paths (default: yes for a
            Dataset object, no for a folder read from disk).
        on_error: ``"raise"`` or ``"skip"`` bad rows (see :mod:`mgpo_datasets.dataset_base`).
        check_files: when images are path strings, ``stat`` each one at load time.
    """
    check_on_error(on_error)
    if boxes_format not in ("xyxy", "xywh"):
        raise ValueError(f"boxes_format must be 'xyxy' or 'xywh', got {boxes_format!r}")
    datasets = _import_datasets()
    from_disk = isinstance(dir_or_dataset, (str, os.PathLike))
    if from_disk:
        folder = Path(dir_or_dataset)
        if not folder.is_dir():
            raise DataError(f"Hugging Face dataset folder {str(folder)!r} does not exist")
        try:
            dataset = datasets.load_from_disk(str(folder))
        except Exception as error:  # datasets raises FileNotFoundError, ValueError, ...
            raise DataError(f"{str(folder)!r} is not a dataset written by save_to_disk: {error}") from error
        source = str(folder)
        root: Optional[Path] = Path(image_root) if image_root is not None else folder
    else:
        dataset = dir_or_dataset
        source = f"Hugging Face dataset {getattr(dataset, 'info', None) and dataset.info.dataset_name or type(dataset).__name__}"
        root = Path(image_root) if image_root is not None else None
    allow_absolute = (not from_disk) if allow_absolute_paths is None else bool(allow_absolute_paths)

    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset.keys())
        if split is None:
            if len(splits) != 1:
                raise DataError(f"{source} has splits {', '.join(splits)}; choose one with split=...")
            split = splits[0]
        if split not in dataset:
            raise DataError(f"{source} has no split {split!r}; it has {', '.join(splits)}")
        dataset = dataset[split]
        source = f"{source} [{split}]"
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset, DatasetDict or a save_to_disk folder, got {type(dataset).__name__}")

    columns = list(dataset.column_names)
    given = {
        "image_column": image_column, "question_column": question_column, "answer_column": answer_column,
        "choices_column": choices_column, "id_column": id_column, "category_column": category_column,
        "boxes_column": boxes_column,
    }
    for key in ("image_column", "question_column", "answer_column"):
        if given[key] not in columns:
            raise DataError(f"{source} has no column {given[key]!r} ({key}); its columns are {', '.join(columns)}")
    for key in ("choices_column", "id_column", "category_column", "boxes_column"):
        name = given[key]
        if name is not None and name not in columns and name != DEFAULT_COLUMNS[key]:
            raise DataError(f"{source} has no column {name!r} ({key}); its columns are {', '.join(columns)}")
    optional = {k: (v if v is not None and v in columns else None) for k, v in given.items()}

    feature = dataset.features[image_column]
    image_is_path = isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    view = None
    if not image_is_path:
        view = dataset.select_columns([image_column])
        if isinstance(feature, datasets.Image):
            view = view.cast_column(image_column, datasets.Image(decode=False))

    # One scan of the small columns (never the image cells unless they are paths).
    wanted = [c for c in (question_column, answer_column, *[optional[k] for k in ("choices_column", "id_column", "category_column", "boxes_column")]) if c]
    extra = [
        c for c in columns
        if c not in wanted and c != image_column
        and isinstance(dataset.features[c], datasets.Value) and dataset.features[c].dtype not in ("binary", "large_binary")
    ]
    scan_columns = wanted + extra + ([image_column] if image_is_path else [])
    table = dataset.select_columns(list(dict.fromkeys(scan_columns))).to_dict()

    collector = RowCollector(source, on_error=on_error, spec=f"hf:{source}" if from_disk else "")
    for i in range(len(dataset)):
        row = {name: values[i] for name, values in table.items()}
        where = name_row(f"{source}, row {i}", row, optional["id_column"], "id")
        id_value = row.get(optional["id_column"]) if optional["id_column"] else None

        def make(i: int = i, row: dict[str, Any] = row, where: str = where, id_value: Any = id_value) -> Sample:
            if image_is_path:
                value = row[image_column]
                if not isinstance(value, str) or not value:
                    raise DataError(f"the image path is empty or not a string: {value!r}")
                path = _image_path(value, root, allow_absolute, where)
                if check_files and not path.is_file():
                    raise DataError(f"image file {str(path)!r} does not exist")
                image: Any = FileImage(path, where)
            else:
                image = HFImage(view, image_column, i, root, allow_absolute, where)
            choices = _choices(row.get(optional["choices_column"]) if optional["choices_column"] else None)
            answer = _answer(row[answer_column], choices)
            boxes = parse_boxes(row.get(optional["boxes_column"]), boxes_format) if optional["boxes_column"] else ()  # type: ignore[arg-type]
            metadata = {name: row[name] for name in extra}
            metadata["source"] = "hf"
            metadata["row"] = i
            question = row[question_column]
            return Sample(
                sample_id=str(id_value) if id_value is not None and str(id_value) else str(i),
                image=image,
                question=question.strip() if isinstance(question, str) else question,
                answer=answer,
                choices=choices,
                target_boxes=boxes,
                category=optional_str(row.get(optional["category_column"])) if optional["category_column"] else None,
                metadata=metadata,
            )

        collector.add(where, make)
    return collector.finish()


def _choices(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except ValueError:
            raise DataError(f"choices {value!r} is a string but not a JSON list") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, (str, int, float)) for c in value):
        raise DataError(f"choices must be a list of option texts, got {value!r}")
    return tuple(str(c).strip() for c in value)


def _answer(value: Any, choices: tuple[str, ...]) -> str:
    """An option letter from a letter, an index or an option's text; else the free text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError("the answer is empty")
    if not choices:
        return str(value).strip()
    if isinstance(value, bool):
        raise DataError(f"the answer {value!r} is not an option letter, index or text")
    if isinstance(value, int):
        if not 0 <= value < len(choices):
            raise DataError(f"the answer index {value} is outside the {len(choices)} choices")
        return string.ascii_uppercase[value]
    text = str(value).strip()
    letter = text.strip("().").upper()
    if len(letter) == 1 and letter in string.ascii_uppercase:
        return letter  # Sample checks that it is one of the choices
    if text in choices:
        return string.ascii_uppercase[choices.index(text)]
    raise DataError(f"the answer {value!r} is neither an option letter nor one of the choices {list(choices)}")
