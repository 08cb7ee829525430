"""What every dataset loader shares: the loaded sequence, bad-row handling, file reading, image refs.

Each loader in :mod:`mgpo_datasets` (V* Bench, MME-RealWorld, HR-Bench, JSONL, Hugging
Face) reads its files once, turns every row into a :class:`~mgpo_datasets.sample.Sample`
and returns a :class:`LoadedDataset`. Images are never decoded at load time: a
sample's ``image`` is a small callable (:class:`FileImage`, or the loader's own)
that opens the image when an episode needs it.

Bad rows. Every loader takes ``on_error``:

* ``"raise"`` (the default): the first bad row raises :class:`~mgpo_datasets.sample.DataError`
  whose message names the file, the row (line number, record index or question
  id) and the problem;
* ``"skip"``: bad rows are dropped and recorded in :attr:`LoadedDataset.skipped` as
  ``(where, reason)`` pairs, and one :class:`DataWarning` says how many were skipped
  and how to see them.

Problems with the file itself (missing, not JSON, no header) always raise.

Reading. The loaders read their files through :func:`require_file`,
:func:`read_json` (one JSON document) and :func:`read_json_lines` (one row a
line), and name rows with :func:`name_row`, so a bad file or row is reported
the same way whichever loader met it.

Example:
    >>> from .sample import Sample
    >>> collector = RowCollector("demo.jsonl", on_error="skip", spec="jsonl:demo.jsonl")
    >>> kept = collector.add("demo.jsonl, line 1", lambda: Sample("a", b"", "Q?", "B", ("x", "y")))
    >>> collector.add("demo.jsonl, line 2", lambda: Sample("b", b"", "Q?", "C", ("x", "y")))
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     data = collector.finish()
    >>> len(data), data.index_of("a"), data.skipped[0][0]
    (1, 0, 'demo.jsonl, line 2')
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Union, overload

from PIL import Image, UnidentifiedImageError

from .image_files import ImageLoadError, resolve_inside
from .sample import Box, DataError, Sample

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES: tuple[str, ...] = ("raise", "skip")

# Errors a malformed row may raise while we pick it apart (wrong types, missing keys).
ROW_ERRORS = (DataError, KeyError, TypeError, ValueError, IndexError)


class DataWarning(UserWarning):
    """Rows of a dataset were skipped (``on_error="skip"``)."""


class EmptyDatasetError(DataError):
    """No usable row is left; :attr:`skipped` holds the reasons rows were dropped."""

    def __init__(self, message: str, skipped: Sequence[tuple[str, str]] = (), source: str = "") -> None:
        super().__init__(message)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.source = source


def check_on_error(on_error: str) -> None:
    """Raise ``ValueError`` unless ``on_error`` is ``"raise"`` or ``"skip"``."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


class LoadedDataset(Sequence[Sample]):
    """A sequence of :class:`~mgpo_datasets.sample.Sample` as a loader returns it.

    It either holds the samples (the usual case: a ``Sample`` is small because its
    image is only a reference) or builds them on demand from ``build(index)``
    (:meth:`lazy`), for sources too large to hold even as references.

    Attributes:
        source: a description of where the rows came from (a path, a spec).
        skipped: ``(where, reason)`` for each row the loader dropped.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        source: str = "",
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._samples: Optional[list[Sample]] = list(samples)
        self._build: Optional[Callable[[int], Sample]] = None
        self._ids: list[str] = [s.sample_id for s in self._samples]
        self._index: dict[str, int] = _index_ids(self._ids, source)
        self.source = source
        self.skipped: list[tuple[str, str]] = list(skipped)

    @classmethod
    def lazy(
        cls,
        ids: Sequence[str],
        build: Callable[[int], Sample],
        *,
        source: str = "",
        skipped: Sequence[tuple[str, str]] = (),
    ) -> "LoadedDataset":
        """A dataset whose ``i``-th sample is ``build(i)``, made on every access.

        ``ids[i]`` must be the id of ``build(i)``; :meth:`index_of` uses it
        without building anything.
        """
        self = cls.__new__(cls)
        self._samples = None
        self._build = build
        self._ids = [str(i) for i in ids]
        self._index = _index_ids(self._ids, source)
        self.source = source
        self.skipped = list(skipped)
        return self

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Sample, list[Sample]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples ({self.source})")
        if self._samples is not None:
            return self._samples[i]
        assert self._build is not None
        return self._build(i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def sample_ids(self) -> list[str]:
        """The ids of all samples, in order (no sample is built)."""
        return list(self._ids)

    def index_of(self, sample_id: str) -> int:
        """Position of the sample with ``sample_id`` (a dict look-up)."""
        try:
            return self._index[sample_id]
        except KeyError:
            raise KeyError(f"no sample with id {sample_id!r} in {self.source or 'the dataset'} ({len(self)} samples)") from None

    def __repr__(self) -> str:
        lazy = ", lazy" if self._samples is None else ""
        return f"LoadedDataset({len(self)} samples from {self.source!r}, {len(self.skipped)} skipped{lazy})"


def _index_ids(ids: Sequence[str], source: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, sample_id in enumerate(ids):
        if sample_id in index:
            raise DataError(f"{source}: sample id {sample_id!r} appears twice (positions {index[sample_id]} and {i})")
        index[sample_id] = i
    return index


class RowCollector:
    """Builds a :class:`LoadedDataset` row by row, applying the ``on_error`` policy.

    A loader calls :meth:`add` with a description of the row (``where``: the file
    and the line/record) and a function that builds the Sample; every
    :data:`ROW_ERRORS` exception it raises becomes a :class:`DataError` naming
    ``where`` (``on_error="raise"``) or an entry of ``skipped`` (``"skip"``).
    Duplicate sample ids are bad rows too: ``reset(options={"sample_id": ...})``
    must find exactly one sample.
    """

    def __init__(self, source: str, *, on_error: str = "raise", spec: str = "") -> None:
        check_on_error(on_error)
        self.source = source
        self.on_error = on_error
        self.spec = spec
        self.samples: list[Sample] = []
        self.skipped: list[tuple[str, str]] = []
        self._where_of: dict[str, str] = {}
        self.rows_seen = 0

    def add(self, where: str, make: Callable[..., Sample], *args: Any, **kwargs: Any) -> Optional[Sample]:
        """Build one row's Sample with ``make(*args, **kwargs)``; return it, or ``None`` if skipped."""
        self.rows_seen += 1
        try:
            sample = make(*args, **kwargs)
        except ROW_ERRORS as error:
            self.bad(where, _reason(error))
            return None
        first = self._where_of.get(sample.sample_id)
        if first is not None:
            self.bad(where, f"sample id {sample.sample_id!r} was already used by {first}")
            return None
        self._where_of[sample.sample_id] = where
        self.samples.append(sample)
        return sample

    def reject(self, where: str, reason: str) -> None:
        """A row that failed before a Sample could be attempted (e.g. unparsable JSON)."""
        self.rows_seen += 1
        self.bad(where, reason)

    def bad(self, where: str, reason: str) -> None:
        """Record a bad row: raise (``on_error="raise"``) or remember it (``"skip"``)."""
        if self.on_error == "raise":
            raise DataError(f"{where}: {reason}")
        self.skipped.append((where, reason))

    def finish(self) -> LoadedDataset:
        """The dataset; warns once if rows were skipped, raises if none is left."""
        if not self.samples:
            detail = ""
            if self.skipped:
                shown = "; ".join(f"{w}: {r}" for w, r in self.skipped[:3])
                detail = f"; all {len(self.skipped)} rows were bad, e.g. {shown}"
            raise EmptyDatasetError(f"{self.source}: no usable samples{detail}", self.skipped, self.source)
        if self.skipped:
            how = f"run `mgpo data {self.spec}`" if self.spec else "run `mgpo data SPEC`"
            warnings.warn(
                f"skipped {len(self.skipped)} of {self.rows_seen} rows of {self.source} with bad data "
                f"(on_error='skip'); the dataset's .skipped lists each (row, reason), or {how} for a report",
                DataWarning,
                stacklevel=3,
            )
        return LoadedDataset(self.samples, source=self.source, skipped=self.skipped)


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}" if error.args else "missing field"
    text = str(error)
    # Sample's own messages start with "sample 'id': "; the row description says it better.
    match = re.match(r"^sample '[^']*': ", text)
    return text[match.end():] if match else text or type(error).__name__


# ---------------------------------------------------------------------------
# Reading files and naming rows


def require_file(path: Path, what: str) -> None:
    """Raise :class:`DataError` ``"WHAT 'PATH' does not exist"`` unless ``path`` is a file.

    Loaders check before reading so that a wrong path is reported as the kind of
    file the loader expected ("JSONL file", "annotation"), not as a bare
    ``FileNotFoundError`` from inside a reader.
    """
    if not path.is_file():
        raise DataError(f"{what} {str(path)!r} does not exist")


_JSON_KINDS: dict[type, str] = {dict: "a JSON object", list: "a JSON list"}


def read_json(path: Path, what: str, expect: type = dict, expected: str = "") -> Any:
    """The JSON document in ``path``, checked to be an ``expect`` (``dict`` or ``list``).

    Every problem is a :class:`DataError` that names the file as ``what``: it is
    missing, unreadable, not JSON (the message keeps json's line and column), or
    holds the wrong kind of value (``expected`` describes the right one, e.g.
    ``"a JSON list of records"``). One reader keeps these messages the same in
    every loader that reads a JSON file.
    """
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (OSError, ValueError) as error:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        raise DataError(f"{what} {str(path)!r} is not readable JSON: {error}") from error
    if not isinstance(value, expect):
        raise DataError(f"{what} {str(path)!r} must hold {expected or _JSON_KINDS[expect]}, got {type(value).__name__}")
    return value


def read_json_lines(path: Path, collector: RowCollector, id_key: str) -> Iterator[tuple[int, str, Any]]:
    """Each non-blank line of a JSON Lines file as ``(line number, where, parsed value)``.

    ``where`` is ``"FILE, line N"`` plus the row's ``id_key`` when it has one
    (:func:`name_row`), for the row's error messages. A line that is not JSON goes
    to ``collector.reject`` and is not yielded: with ``on_error="raise"`` it stops
    the load naming the file and line, with ``"skip"`` one broken line does not
    cost the rest of the file. The file is read one line at a time.
    """
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                collector.reject(where, f"not valid JSON: {error}")
                continue
            yield line_number, name_row(where, row, id_key), row


def name_row(where: str, row: Any, key: Optional[str], label: str = "") -> str:
    """``where`` plus ``" (LABEL VALUE)"`` when ``row`` is a dict with a non-null ``row[key]``.

    The id a user would search the file for (``question_id``, ``Question_id``, ``id``)
    is often quicker to find than a line or record number. ``label`` defaults to ``key``.
    """
    if key is None or not isinstance(row, dict) or row.get(key) is None:
        return where
    return f"{where} ({label or key} {row[key]!r})"


def image_root_for(path: Path, image_root: Optional[Union[str, Path]]) -> Path:
    """The folder the image paths in ``path`` are relative to: ``image_root``, else the file's own folder.

    Checked to be a directory now, so a wrong ``image_root`` is one error at load
    time instead of a "does not exist" for every row.
    """
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise DataError(f"image root {str(root)!r} for {str(path)!r} is not a directory")
    return root


# ---------------------------------------------------------------------------
# Images


class FileImage:
    """An image file, opened only when called; errors name the file and the dataset row.

    It is the ``image`` of samples whose images are files. Calling it returns
    ``PIL.Image.open(path)`` (lazy: only the header is read until ``.load()``),
    so :func:`~mgpo_datasets.image_files.image_size` reads headers only and
    :func:`~mgpo_datasets.image_files.decode_image` decodes fully. ``decode_image``
    describes a callable reference as ``"image from " + ref.__qualname__``; we set
    ``__qualname__`` to the file and row, so a truncated JPEG reports e.g.
    ``image from file '/data/a.jpg' (test_questions.jsonl, line 3): image file is truncated``.
    """

    def __init__(self, path: Union[str, Path], where: str = "") -> None:
        self.path = Path(path)
        self.where = where
        self.__qualname__ = f"file {str(self.path)!r}" + (f" ({where})" if where else "")

    def __call__(self) -> Image.Image:
        try:
            image = Image.open(self.path)
        except FileNotFoundError:
            raise ImageLoadError(f"image {self.__qualname__} does not exist") from None
        except (OSError, UnidentifiedImageError) as error:
            raise ImageLoadError(f"image {self.__qualname__} is not a readable image: {error}") from error
        fp = getattr(image, "fp", None)
        if fp is not None:
            # Pillow closes the file after a successful load(), but a header-only
            # use (image_size) or a failed load (a truncated file) leaves it open
            # until garbage collection, with a ResourceWarning. Close it then.
            weakref.finalize(image, fp.close)
        return image

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FileImage({str(self.path)!r})"


def resolve_image_path(root: Union[str, Path], relative: Any, where: str, *, check_exists: bool = True) -> Path:
    """``root/relative`` after :func:`resolve_inside`, checked to be a file.

    Raises :class:`DataError` (an absolute path, ``..``, a symlink out of
    ``root``, a missing file). Checking existence costs one ``stat`` a row,
    which lets a missing image fail at load time instead of mid-training.
    """
    if not isinstance(relative, str):
        raise DataError(f"image path must be a string, got {type(relative).__name__} {relative!r}")
    path = resolve_inside(root, relative)
    if check_exists and not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist")
    return path


# ---------------------------------------------------------------------------
# Questions, options, answers

# "(A) text", "A. text", "A) text", "A: text" at the start of a line.
_OPTION_LINE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])\s*(.*?)\s*$")
_OPTION_PREFIX = re.compile(r"^\s*\(([A-Za-z])\)\s*")
# A header some prompts put between the question and its options.
_TRAILING_OPTIONS_HEADER = re.compile(r"\s*(?:The choices are listed below|Options|Choices)\s*:\s*$", re.IGNORECASE)


def split_question_and_options(text: str) -> tuple[str, tuple[str, ...]]:
    """Split a prompt with lettered option lines into (question, options).

    Lines before the first ``(A) ...`` line are the question; the option lines
    must run A, B, C, ... without gaps; anything after the last option (an
    instruction such as "Answer with the option's letter ...") is dropped.
    A text with no option lines is returned whole with no options.

    Example:
        >>> split_question_and_options("What color is the cup?\\n(A) red\\n(B) blue\\nAnswer with the letter.")
        ('What color is the cup?', ('red', 'blue'))
    """
    lines = text.splitlines()
    first = None
    for i, line in enumerate(lines):
        match = _OPTION_LINE.match(line)
        if match and (match.group(1) or match.group(2)) == "A":
            first = i
            break
    if first is None:
        return text.strip(), ()
    options: list[str] = []
    for line in lines[first:]:
        match = _OPTION_LINE.match(line)
        expected = string.ascii_uppercase[len(options)] if len(options) < 26 else None
        if not match or (match.group(1) or match.group(2)) != expected:
            break  # the instruction after the options, or the end of them
        options.append(match.group(3))
    question = _TRAILING_OPTIONS_HEADER.sub("", "\n".join(lines[:first])).strip()
    return question, tuple(options)


def strip_option_prefix(option: Any, position: int) -> str:
    """Remove a leading ``"(A) "`` from an option text, checking the letter's position.

    Example:
        >>> strip_option_prefix("(B) two cars", 1)
        'two cars'
    """
    if not isinstance(option, str):
        raise DataError(f"option {position + 1} is {type(option).__name__} {option!r}, not text")
    match = _OPTION_PREFIX.match(option)
    if not match:
        return option.strip()
    letter = match.group(1).upper()
    if position < 26 and letter != string.ascii_uppercase[position]:
        raise DataError(f"option {position + 1} {option!r} is labelled ({letter}), expected ({string.ascii_uppercase[position]})")
    return option[match.end():].strip()


def parse_answer_letter(value: Any) -> str:
    """An answer letter from ``"B"``, ``"(B)"``, ``"b"`` or ``"B."``; raise on anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError("the answer is empty")
    if not isinstance(value, str):
        raise DataError(f"the answer {value!r} is not an option letter")
    text = value.strip().strip("().").strip()
    if len(text) != 1 or text.upper() not in string.ascii_uppercase:
        raise DataError(f"the answer {value!r} is not an option letter")
    return text.upper()


def shuffle_choices(choices: Sequence[str], answer: str, seed: int, key: str) -> tuple[tuple[str, ...], str]:
    """Permute ``choices`` deterministically and move the answer letter with them.

    The permutation depends only on ``seed`` and ``key`` (e.g. the sample id):
    the same on every machine and run, independent of ``PYTHONHASHSEED``
    (``random.Random`` seeds from a string through SHA-512).

    Example:
        >>> shuffle_choices(("right", "wrong1", "wrong2"), "A", seed=0, key="s1")
        (('wrong1', 'wrong2', 'right'), 'C')
    """
    order = list(range(len(choices)))
    random.Random(f"{seed}:{key}").shuffle(order)
    new_choices = tuple(choices[i] for i in order)
    old_index = string.ascii_uppercase.index(answer)
    return new_choices, string.ascii_uppercase[order.index(old_index)]


# ---------------------------------------------------------------------------
# Boxes


def parse_boxes(value: Any, box_format: Literal["xyxy", "xywh"] = "xyxy") -> tuple[Box, ...]:
    """Boxes from one box ``[a, b, c, d]`` or a list of them, as ``(x1, y1, x2, y2)``.

    ``box_format="xywh"`` converts ``[x, y, w, h]`` with
    :func:`xywh_to_xyxy`. ``None`` or ``[]`` give no boxes.

    Example:
        >>> parse_boxes([10, 20, 30, 40], "xywh")
        ((10.0, 20.0, 40.0, 60.0),)
    """
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"boxes must be a list of [4 numbers], got {type(value).__name__} {value!r}")
    if not value:
        return ()
    items = [value] if all(_is_number(v) for v in value) else list(value)
    boxes: list[Box] = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 4 or not all(_is_number(v) for v in item):
            raise DataError(f"box {item!r} is not 4 numbers")
        boxes.append(xywh_to_xyxy(item) if box_format == "xywh" else tuple(float(v) for v in item))  # type: ignore[arg-type]
    return tuple(boxes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def optional_str(value: Any) -> Optional[str]:
    """``str(value)`` or ``None`` for a missing/empty/NaN value (pandas writes NaN as "")."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    text = str(value).strip()
    return text or None


def display_path(path: Union[str, Path]) -> str:
    """A path as messages show it (as given; absolute paths stay absolute)."""
    return os.fspath(path)


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    """Convert ``(x, y, width, height)`` (V* Bench, COCO) to ``(x1, y1, x2, y2)``."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)
