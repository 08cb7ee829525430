"""HR-Bench (4K and 8K) from its TSV file, images decoded lazily (``dataset="hr-bench:FILE"``).

The TSV has a header row and the columns ``index``, ``question``, ``A`` .. ``D``,
``answer`` (a letter), ``category``, ``cycle_category`` and ``image``: the image
file itself, base64-encoded. An 8K row's image column is about 10 MB, so the
file as a whole is gigabytes: the loader must not hold it.

How it loads:

* one pass over the file in binary, recording each row's byte offset and length
  and parsing only the small columns (``csv.field_size_limit`` is raised first,
  because Python's csv module refuses fields over 128 KiB by default);
* each sample's ``image`` is a :class:`TsvImage`, a zero-argument callable that
  seeks to the row, reads it, base64-decodes the image column and returns
  ``PIL.Image.open(BytesIO(...))``. Nothing is decoded at load time; at most
  the first few base64 characters of each image are checked.
* following the convention of VLMEvalKit's TSV files, an ``image`` cell of at most
  64 characters is the ``index`` of another row whose image it shares.
* the sample id is ``str(index)``; ``category`` is the ``category`` column;
  ``cycle_category`` goes to ``metadata``. Options are the letter columns ``A``,
  ``B``, ... present in the header (empty trailing options are dropped).

Example:
    >>> data = load_hr_bench("/data/hr_bench/hr_bench_8k.tsv")      # doctest: +SKIP
    >>> data[0].question, data[0].choices, data[0].answer            # doctest: +SKIP
    ('What is the color of the umbrella?', ('Red', 'Blue', 'Green', 'Black'), 'B')
    >>> data[0].image().size                                         # doctest: +SKIP
    (7680, 4320)
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple, Optional, Union

from PIL import Image, UnidentifiedImageError

from .image_files import ImageLoadError
from .sample import DataError, Sample

from .dataset_base import LoadedDataset, RowCollector, check_on_error, optional_str, parse_answer_letter, require_file

REQUIRED_COLUMNS: tuple[str, ...] = ("index", "question", "answer", "image")
# VLMEvalKit writes a short cell (another row's index) instead of repeating an image.
IMAGE_REFERENCE_MAX_CHARS = 64
# The standard base64 alphabet (binascii.a2b_base64 silently skips other characters).
_BASE64_PREFIX = re.compile(rb"[A-Za-z0-9+/]+={0,2}")


def allow_huge_csv_fields() -> None:
    """Raise ``csv.field_size_limit`` to the largest value the platform accepts.

    The default (131,072 characters) is far below an 8K image's base64 cell. The
    limit is process-wide and only ever raised here, never lowered.
    """
    limit = sys.maxsize
    if csv.field_size_limit() >= limit:
        return
    while limit > 131_072:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # a C long is 32 bits on some platforms
            limit //= 2


# The scan reads the file in large chunks and copies only small cells: at
# ~10 MB of base64 per 8K row, splitting lines into bytes objects would copy
# every image two or three times.
_CHUNK_BYTES = 1 << 20
_SMALL_CELL_BYTES = 1 << 20


class _BigCell(NamedTuple):
    """A cell too long to copy while scanning (an image): its length and first bytes."""

    length: int
    prefix: bytes


Cell = Union[bytes, _BigCell]


@dataclass(frozen=True)
class _Record:
    line: int  # 1-based line where the record starts
    offset: int  # byte offset of the record in the file
    length: int  # bytes, including the line break(s)
    cells: list[Cell]
    error: Optional[str] = None  # why the record could not be split into cells


def _abbreviate(cell: bytes) -> Cell:
    return cell if len(cell) <= _SMALL_CELL_BYTES else _BigCell(len(cell), cell[:64])


def _unquoted_cells(buf: Union[bytes, bytearray], start: int, end: int) -> list[Cell]:
    """Split ``buf[start:end]`` (one record without quotes) at tabs, abbreviating long cells."""
    cells: list[Cell] = []
    position = start
    while True:
        tab = buf.find(b"\t", position, end)
        stop = end if tab < 0 else tab
        if stop - position <= _SMALL_CELL_BYTES:
            cells.append(bytes(buf[position:stop]))
        else:
            cells.append(_BigCell(stop - position, bytes(buf[position:position + 64])))
        if tab < 0:
            return cells
        position = tab + 1


def _quoted_cells(raw: bytes) -> list[bytes]:
    """The cells of one record holding quotes, through the csv module."""
    allow_huge_csv_fields()
    text = raw.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=True))
    if len(rows) != 1:
        raise DataError(f"expected one TSV record, found {len(rows)}")
    return [cell.encode("utf-8") for cell in rows[0]]


def _record(buf: bytearray, start: int, stop: int, base: int, line: int, quoted: bool) -> _Record:
    end = stop
    if end > start and buf[end - 1] == 0x0A:
        end -= 1
    if end > start and buf[end - 1] == 0x0D:
        end -= 1
    if not quoted:
        return _Record(line, base + start, stop - start, _unquoted_cells(buf, start, end))
    try:
        cells = [_abbreviate(c) for c in _quoted_cells(bytes(buf[start:stop]))]
    except (DataError, csv.Error, UnicodeDecodeError) as error:
        return _Record(line, base + start, stop - start, [], f"the row cannot be parsed: {error}")
    return _Record(line, base + start, stop - start, cells)


def _count_quotes(buf: bytearray, start: int, end: int) -> int:
    # find() is memchr-fast and count() is not; base64 cells hold no quotes at all.
    first = buf.find(b'"', start, end)
    return 0 if first < 0 else buf.count(b'"', first, end)


def _iter_records(file: BinaryIO, chunk_bytes: int = _CHUNK_BYTES) -> Iterator[_Record]:
    """Yield the file's records with their byte positions and (abbreviated) cells.

    A record may span several lines when a quoted field holds a line break; with
    csv's doubled-quote escaping a record is complete exactly when it holds an
    even number of ``"`` characters, which lets us find record boundaries in
    bytes without parsing the (huge) image cells. Memory: one chunk plus the
    record being read.
    """
    buf = bytearray()
    base = 0  # file offset of buf[0]
    start = 0  # where the current record starts in buf
    position = 0  # next byte of buf to scan
    quotes = 0
    line = record_line = 1
    eof = False
    while True:
        newline = buf.find(b"\n", position)
        if newline < 0:
            quotes += _count_quotes(buf, position, len(buf))
            position = len(buf)
            if eof:
                if start < len(buf):  # no final line break, or an unterminated quote
                    yield _record(buf, start, len(buf), base, record_line, quotes > 0)
                return
            if start:
                # Keep only the unfinished record. A new bytearray, not `del buf[:start]`:
                # CPython keeps a bytearray's allocation when its front is deleted.
                buf = bytearray(memoryview(buf)[start:])
                base += start
                position -= start
                start = 0
            data = file.read(chunk_bytes)
            if data:
                buf += data
            else:
                eof = True
            continue
        quotes += _count_quotes(buf, position, newline)
        position = newline + 1
        line += 1
        if quotes % 2 == 0:
            yield _record(buf, start, position, base, record_line, quotes > 0)
            start, quotes, record_line = position, 0, line


def _text(cell: Cell) -> str:
    if isinstance(cell, _BigCell):
        raise DataError(f"a text cell is {cell.length:,} bytes long")
    return cell.decode("utf-8")


def _cell_views(record: memoryview) -> list[memoryview]:
    """Split one unquoted record at tabs without copying its cells."""
    data = record.obj if isinstance(record.obj, bytes) else bytes(record)
    cells, position, end = [], 0, len(record)
    while True:
        tab = data.find(b"\t", position, end)
        stop = end if tab < 0 else tab
        cells.append(record[position:stop])
        if tab < 0:
            return cells
        position = tab + 1


def _decode_image_field(cell: Union[bytes, memoryview]) -> bytes:
    """Base64 text -> image bytes (the expensive step the loader defers).

    ``b64decode`` skips characters outside the alphabet (a stray ``\\r``, spaces).
    """
    return base64.b64decode(cell)


class TsvImage:
    """The image of one TSV row, read and decoded from the file only when called.

    Picklable (it holds a path and numbers), so vector environments in other
    processes can use it. Error messages name the file and the row.
    """

    def __init__(self, path: Union[str, Path], offset: int, length: int, image_column: int,
                 index_column: int, index: str, where: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.length = length
        self.image_column = image_column
        self.index_column = index_column
        self.index = index
        self.where = where
        # decode_image() names a callable reference by its __qualname__.
        self.__qualname__ = f"the base64 cell of {where}"

    def read_bytes(self) -> bytes:
        """The encoded image (JPEG/PNG bytes) of this row."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                raw = file.read(self.length)
        except OSError as error:
            raise ImageLoadError(f"{self.__qualname__}: cannot read the file: {error}") from error
        try:
            if b'"' in raw:
                cells: list[Any] = _quoted_cells(raw)
            else:
                end = len(raw) - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0)
                cells = _cell_views(memoryview(raw)[:end])
        except (DataError, csv.Error, UnicodeDecodeError) as error:
            raise ImageLoadError(f"{self.__qualname__}: the row cannot be parsed ({error}); has the file changed since loading?") from error
        if len(cells) <= max(self.image_column, self.index_column) or bytes(cells[self.index_column]).decode("utf-8", "replace").strip() != self.index:
            raise ImageLoadError(f"{self.__qualname__}: the file no longer has this row at byte {self.offset}; has it changed since loading?")
        try:
            return _decode_image_field(cells[self.image_column])
        except (binascii.Error, ValueError) as error:
            raise ImageLoadError(f"{self.__qualname__}: the image column is not valid base64: {error}") from error

    def __call__(self) -> Image.Image:
        data = self.read_bytes()
        try:
            return Image.open(io.BytesIO(data))
        except (OSError, UnidentifiedImageError) as error:
            raise ImageLoadError(f"{self.__qualname__}: not a readable image ({len(data)} bytes): {error}") from error

    def __repr__(self) -> str:
        return f"TsvImage({str(self.path)!r}, offset={self.offset}, index={self.index!r})"


@dataclass
class _Row:
    """What the loader keeps of a row: positions and small cells, never the image."""

    where: str
    line: int
    offset: int
    length: int
    cells: dict[str, str]
    image_reference: Optional[str]


def load_hr_bench(tsv_file: Union[str, Path], *, on_error: str = "raise") -> LoadedDataset:
    """Load an HR-Bench TSV file (see the module docstring); images stay on disk.

    Args:
        tsv_file: ``hr_bench_4k.tsv`` or ``hr_bench_8k.tsv`` (any TSV with those columns).
        on_error: ``"raise"`` or ``"skip"`` bad rows (see :mod:`mgpo_datasets.dataset_base`).
    """
    check_on_error(on_error)
    path = Path(tsv_file)
    require_file(path, "HR-Bench file")
    collector = RowCollector(str(path), on_error=on_error, spec=f"hr-bench:{path}")
    rows: list[_Row] = []
    with open(path, "rb") as file:
        records = _iter_records(file)
        header_record = next(records, None)
        if header_record is None:
            raise DataError(f"HR-Bench file {str(path)!r} is empty")
        try:
            if header_record.error:
                raise DataError(header_record.error)
            header = [_text(c).strip() for c in header_record.cells]
        except (DataError, UnicodeDecodeError) as error:
            raise DataError(f"{path}, line 1: the header cannot be parsed: {error}") from error
        if header:
            header[0] = header[0].lstrip("\ufeff")  # a UTF-8 byte-order mark
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}, line 1: the header lacks column(s) {', '.join(missing)}; it has {', '.join(header)}")
        image_column = header.index("image")
        index_column = header.index("index")
        for record in records:
            if not record.error and len(record.cells) <= 1 and not any(isinstance(c, bytes) and c.strip() for c in record.cells):
                continue  # a blank line
            where = f"{path}, line {record.line}"
            row = _scan_row(record, header, image_column, where, collector)
            if row is not None:
                rows.append(row)

    first_row_of: dict[str, _Row] = {}
    for row in rows:
        first_row_of.setdefault(row.cells["index"], row)
    option_letters = [c for c in string.ascii_uppercase if c in header]
    option_letters = option_letters[: _consecutive(option_letters)]
    for row in rows:
        collector.add(row.where, _sample, path, row, first_row_of, option_letters, image_column, index_column)
    return collector.finish()


def _consecutive(letters: list[str]) -> int:
    n = 0
    while n < len(letters) and letters[n] == string.ascii_uppercase[n]:
        n += 1
    return n


def _scan_row(record: _Record, header: list[str], image_column: int, where: str, collector: RowCollector) -> Optional[_Row]:
    if record.error:
        collector.reject(where, record.error)
        return None
    cells = record.cells
    if len(cells) != len(header):
        collector.reject(where, f"the row has {len(cells)} tab-separated cells, the header has {len(header)}")
        return None
    try:
        small = {name: _text(cells[i]) for i, name in enumerate(header) if i != image_column}
    except UnicodeDecodeError as error:
        collector.reject(where, f"the row is not UTF-8 text: {error}")
        return None
    except DataError as error:
        collector.reject(where, str(error))
        return None
    index = small["index"].strip()
    if index:
        where = f"{where} (index {index})"
    image_cell = cells[image_column]
    length = image_cell.length if isinstance(image_cell, _BigCell) else len(image_cell.strip())
    reference: Optional[str] = None
    if not length:
        collector.reject(where, "the image column is empty")
        return None
    if length <= IMAGE_REFERENCE_MAX_CHARS and isinstance(image_cell, bytes):
        reference = image_cell.strip().decode("ascii", "replace")
    else:
        # Check only a prefix: decoding the whole cell is what the loader defers.
        prefix = (image_cell.prefix if isinstance(image_cell, _BigCell) else image_cell[:64]).strip()
        if not _BASE64_PREFIX.fullmatch(prefix):
            collector.reject(where, f"the image column is not base64 (it starts {prefix[:16].decode('ascii', 'replace')!r})")
            return None
    small["index"] = index
    return _Row(where, record.line, record.offset, record.length, small, reference)


def _sample(path: Path, row: _Row, first_row_of: dict[str, _Row], option_letters: list[str],
            image_column: int, index_column: int) -> Sample:
    cells = row.cells
    if not cells["index"]:
        raise DataError("the index column is empty")
    source_row = row
    if row.image_reference is not None:
        target = first_row_of.get(row.image_reference)
        if target is None or target.image_reference is not None:
            raise DataError(
                f"the image column {row.image_reference!r} is too short to be an image and names no row "
                f"with an image (a short cell is read as another row's index)"
            )
        source_row = target
    options = [optional_str(cells[letter]) for letter in option_letters]
    while options and options[-1] is None:
        options.pop()
    if any(o is None for o in options):
        raise DataError(f"option {string.ascii_uppercase[options.index(None)]} is empty but later options are not")
    question = cells["question"].strip()
    return Sample(
        sample_id=cells["index"],
        image=TsvImage(path, source_row.offset, source_row.length, image_column, index_column,
                       source_row.cells["index"], source_row.where),
        question=question,
        answer=parse_answer_letter(cells["answer"]),
        choices=tuple(o for o in options if o is not None),
        category=optional_str(cells.get("category")),
        metadata={
            "source": "hr-bench",
            "index": cells["index"],
            "cycle_category": optional_str(cells.get("cycle_category")),
            "line": row.line,
            "image_shared_with": row.image_reference,
        },
    )
