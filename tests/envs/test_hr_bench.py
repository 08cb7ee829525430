"""HR-Bench's TSV with base64 images, decoded only when an episode needs one (:mod:`mgpo_datasets.hr_bench`)."""

from __future__ import annotations

import tracemalloc

import pytest
from PIL import Image

from mgpo_datasets import hr_bench
from mgpo_datasets.hr_bench import load_hr_bench
from mgpo_datasets.image_files import ImageLoadError, decode_image, image_size
from mgpo_datasets.sample import DataError

from .loader_helpers import HR_HEADER, b64, episode, hr_row, jpeg_bytes, make_hr, one_bad_row, write_hr_tsv


class TestHRBench:
    def test_rows(self, tmp_path):
        data = load_hr_bench(make_hr(tmp_path))
        assert len(data) == 4
        s0 = data[data.index_of("0")]
        assert s0.question == "What is the color of object 0?"
        assert s0.choices == ("Red", "Blue", "Green", "Black") and s0.answer == "B"
        assert s0.category == "FSP" and s0.metadata["cycle_category"] == "cycle_0"
        assert decode_image(s0.image).size == (640, 480)
        assert data[1].answer_text == "Black" and data[1].category == "FCP"
        assert image_size(data[1].image) == (800, 600)
        quoted = data[data.index_of("2")]
        assert quoted.question == 'Read the "EXIT"\tsign:\nwhat does it say?'
        assert decode_image(quoted.image).size == (700, 500)
        shared = data[data.index_of("3")]
        assert shared.metadata["image_shared_with"] == "0" and image_size(shared.image) == (640, 480)

    def test_big_cell_needs_the_field_size_limit(self, tmp_path):
        path = make_hr(tmp_path)
        text = path.read_text()
        assert max(len(cell) for line in text.splitlines() for cell in line.split("\t")) > 131_072
        assert '"' in text.splitlines()[3]  # row 2 goes through the csv module

    @pytest.mark.parametrize("chunk_bytes", [1, 7, 100, 4096])
    def test_record_boundaries_do_not_depend_on_chunk_size(self, tmp_path, chunk_bytes):
        path = make_hr(tmp_path)
        with open(path, "rb") as f:
            expected = list(hr_bench._iter_records(f))
        with open(path, "rb") as f:
            got = list(hr_bench._iter_records(f, chunk_bytes=chunk_bytes))
        assert got == expected
        assert [r.line for r in got] == [1, 2, 3, 4, 6]  # row 2's question holds a line break
        raw = path.read_bytes()
        for record in got:  # offsets and lengths cover the file exactly
            assert raw[record.offset + record.length - 1: record.offset + record.length] == b"\n"
        assert got[-1].offset + got[-1].length == len(raw)

    def test_crlf_and_no_final_newline(self, tmp_path):
        image = b64(jpeg_bytes((320, 200)))
        text = "\t".join(HR_HEADER) + "\r\n" + "\t".join(hr_row(0, image)) + "\r\n\r\n" + "\t".join(hr_row(1, image, answer="C"))
        path = tmp_path / "crlf.tsv"
        path.write_bytes(text.encode())
        data = load_hr_bench(path)
        assert [s.answer for s in data] == ["B", "C"] and data[0].metadata["cycle_category"] == "cycle_0"
        assert decode_image(data[0].image).size == (320, 200) and decode_image(data[1].image).size == (320, 200)

    def test_no_image_is_decoded_at_load_time(self, tmp_path, monkeypatch):
        path = make_hr(tmp_path)
        calls = {"b64": 0, "open": 0}
        real_decode, real_open = hr_bench._decode_image_field, Image.open

        def counting_decode(cell):
            calls["b64"] += 1
            return real_decode(cell)

        def counting_open(*args, **kwargs):
            calls["open"] += 1
            return real_open(*args, **kwargs)

        monkeypatch.setattr(hr_bench, "_decode_image_field", counting_decode)
        monkeypatch.setattr(Image, "open", counting_open)
        data = load_hr_bench(path)
        assert calls == {"b64": 0, "open": 0}
        data[1].image()
        assert calls == {"b64": 1, "open": 1}

    def test_memory_does_not_hold_the_images(self, tmp_path):
        image = b64(jpeg_bytes((1200, 900), noise=True, quality=95))
        assert len(image) > 1_000_000
        path = write_hr_tsv(tmp_path / "big.tsv", [hr_row(i, image) for i in range(24)])
        assert path.stat().st_size > 24_000_000
        tracemalloc.start()
        try:
            data = load_hr_bench(path)
            _, peak = tracemalloc.get_traced_memory()
            current, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(data) == 24
        # about one row plus one read chunk, whatever the file's size
        assert peak < 4 * len(image), f"peak {peak:,} bytes while loading a {path.stat().st_size:,}-byte file"
        assert current < 1_000_000, f"{current:,} bytes held after loading"

    @pytest.mark.parametrize(
        "row, message",
        [
            (hr_row(1, "IMG", answer=""), r"the answer is empty"),
            (hr_row(1, "IMG", answer="E"), r"answer 'E' is not one of the option letters A, B, C, D"),
            (hr_row(1, "IMG", options=("a", "", "c", "d")), r"option B is empty"),
            (hr_row(1, "@@@@" * 40), r"the image column is not base64"),
            (hr_row(1, "42"), r"names no row with an image"),
            (hr_row(1, "IMG")[:-2] + ["IMG"], r"has 9 tab-separated cells, the header has 10"),
        ],
    )
    def test_bad_rows(self, tmp_path, row, message):
        image = b64(jpeg_bytes())
        row = [image if cell == "IMG" else cell for cell in row]
        path = write_hr_tsv(tmp_path / "hr.tsv", [hr_row(0, image), row, hr_row(2, image)])
        data = one_bad_row(load_hr_bench, path, message, "hr.tsv, line 3")
        assert [s.sample_id for s in data] == ["0", "2"]

    def test_truncated_image_error_names_row(self, tmp_path):
        data = jpeg_bytes(noise=True)
        path = write_hr_tsv(tmp_path / "hr.tsv", [hr_row(7, b64(data[: len(data) // 3]))])
        s = load_hr_bench(path)[0]
        with pytest.raises(ImageLoadError, match=r"hr\.tsv, line 2 \(index 7\).*truncated"):
            decode_image(s.image)

    def test_header_problems(self, tmp_path):
        path = write_hr_tsv(tmp_path / "hr.tsv", [], header=["index", "question", "A", "B"])
        with pytest.raises(DataError, match="lacks column"):
            load_hr_bench(path)
        (tmp_path / "empty.tsv").write_text("")
        with pytest.raises(DataError, match="is empty"):
            load_hr_bench(tmp_path / "empty.tsv")

    def test_changed_file_is_detected(self, tmp_path):
        path = make_hr(tmp_path)
        data = load_hr_bench(path)
        write_hr_tsv(path, [hr_row(5, b64(jpeg_bytes()))])
        with pytest.raises(ImageLoadError, match="changed since loading"):
            decode_image(data[1].image)

    def test_pickles(self, tmp_path):
        import pickle

        data = load_hr_bench(make_hr(tmp_path))
        copy = pickle.loads(pickle.dumps(data))
        assert decode_image(copy[1].image).size == (800, 600)


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=...)`` with an HR-Bench TSV, as users meet the loader."""

    def test_hr_bench(self, tmp_path):
        env, _, info = episode(f"hr-bench:{make_hr(tmp_path)}", "1", (800, 600), None)
        assert info["category"] == "FCP"
        env.close()
