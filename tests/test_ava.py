"""AVA metadata: the real AVA.txt rows, the official lists, the AVA1 rule against the published labels, and
validation errors that name the file and line."""
import re

import numpy as np
import pandas as pd
import pytest

from ilgnet.data.ava import (AVA_COLUMNS, COUNT_COLUMNS, add_vote_stats, ava1_labels, image_path, read_ava_txt,
                             read_id_list, read_list_file, write_list_file)


@pytest.fixture(scope="module")
def head_rows(shared_data):
    return shared_data / "ava" / "AVA_head_rows1-1212.txt"


def test_reads_the_real_ava_txt_rows(head_rows):
    meta = read_ava_txt(head_rows)
    assert list(meta.columns) == [*AVA_COLUMNS, "votes", "mean", "std"]
    assert len(meta) == 1212
    assert meta["index"].tolist() == list(range(1, 1213))
    # Line 1 of AVA.txt: 1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396
    first = meta.iloc[0]
    assert first[AVA_COLUMNS].tolist() == [1, 953619, 0, 1, 5, 17, 38, 36, 15, 6, 5, 1, 1, 22, 1396]
    scores = np.repeat(np.arange(1, 11), first[COUNT_COLUMNS].astype(int).to_numpy())
    assert first["votes"] == len(scores) == 124
    assert first["mean"] == pytest.approx(scores.mean(), abs=1e-12)
    assert first["std"] == pytest.approx(scores.std(), abs=1e-12)
    assert (meta["votes"] > 0).all() and meta["image_id"].is_unique


def test_means_agree_with_the_sample_photo_labels(shared_data, head_rows):
    meta = read_ava_txt(head_rows)
    labels = pd.read_csv(shared_data / "ava-sample" / "labels.csv")
    both = labels.merge(meta, on="image_id")
    assert len(both) == 85  # the sample photos of AVA rows 1-3 and 183-274
    assert np.abs(both["mean_score"] - both["mean"]).max() < 1e-5


@pytest.mark.slow
def test_ava1_rule_matches_every_published_label_with_known_votes(shared_data):
    known = add_vote_stats(pd.read_csv(shared_data / "ava" / "ava_known_votes_partial.csv"))
    published = pd.concat([read_list_file(shared_data / "ilgnet-published" / "data" / "AVA1" / f"{name}.txt")
                           for name in ("train", "val")])
    both = known.merge(published[["image_id", "label"]].astype({"image_id": np.int64}), on="image_id",
                       validate="one_to_one")
    assert len(both) == len(known) == 65_743
    assert (ava1_labels(both["mean"]) == both["label"]).all()
    # The tie rule is what decides: 160 images average exactly 5.0 and all are published as low.
    ties = both[both["mean"] == 5.0]
    assert len(ties) == 160 and (ties["label"] == 0).all()
    assert ((both["mean"] >= 5.0).astype(int) != both["label"]).sum() == 160


def test_reads_the_official_image_lists(shared_data):
    lists = shared_data / "ava" / "aesthetics_image_lists"
    counts = {path.stem: len(read_id_list(path)) for path in sorted(lists.glob("*.jpgl"))}
    assert len(counts) == 19
    assert counts.pop("generic_test") == 20_000
    assert counts.pop("generic_ls_train") == 20_000
    assert counts.pop("generic_ss_train") == 2_500
    assert set(counts.values()) == {2_500}  # 8 categories, train and test
    test_ids = read_id_list(lists / "generic_test.jpgl")
    val = read_list_file(shared_data / "ilgnet-published" / "data" / "AVA1" / "val.txt")
    assert test_ids.isin(val["image_id"]).sum() == 1_535  # ILGNet's test set is not AVA's generic_test


def _write_rows(tmp_path, head_rows, edit):
    """AVA.txt made of the first 5 real rows, with `edit` applied to the list of lines."""
    lines = head_rows.read_text().splitlines()[:5]
    edit(lines)
    path = tmp_path / "AVA.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _expect_error(path, pattern, **kwargs):
    with pytest.raises(ValueError, match=re.escape(f"{path}:") + pattern):
        read_ava_txt(path, **kwargs)


def test_wrong_column_count_names_file_and_line(tmp_path, head_rows):
    path = _write_rows(tmp_path, head_rows, lambda lines: lines.__setitem__(2, lines[2].rsplit(" ", 1)[0]))
    _expect_error(path, r"3: expected 15 columns .*found 14")
    path = _write_rows(tmp_path, head_rows, lambda lines: lines.__setitem__(3, lines[3] + " 7"))
    _expect_error(path, r"4: expected 15 columns .*found 16")


def test_non_integer_field_names_file_line_and_column(tmp_path, head_rows):
    def edit(lines):
        fields = lines[1].split()
        fields[4] = "5.5"
        lines[1] = " ".join(fields)

    path = _write_rows(tmp_path, head_rows, edit)
    _expect_error(path, r"2: column 5 \(count_3\) is not a non-negative integer: '5.5'")


def test_duplicate_id_is_an_error_unless_dropped(tmp_path, head_rows):
    def edit(lines):
        fields = lines[4].split()
        fields[1] = lines[1].split()[1]
        lines[4] = " ".join(fields)

    path = _write_rows(tmp_path, head_rows, edit)
    _expect_error(path, r"5: image id 953958 already on line 2")
    meta = read_ava_txt(path, drop_invalid=True)
    assert len(meta) == 4 and meta["image_id"].is_unique
    assert meta.attrs["dropped"] == [(5, 953958, "image id 953958 already on line 2")]


def test_image_without_votes_is_an_error_unless_dropped(tmp_path, head_rows):
    def edit(lines):
        fields = lines[2].split()
        fields[2:12] = ["0"] * 10
        lines[2] = " ".join(fields)

    path = _write_rows(tmp_path, head_rows, edit)
    _expect_error(path, r"3: image 954184 has no votes")
    meta = read_ava_txt(path, drop_invalid=True)
    assert 954184 not in meta["image_id"].tolist() and len(meta) == 4


def test_crlf_and_blank_lines_read_the_same(tmp_path, head_rows):
    lines = head_rows.read_text().splitlines()[:20]
    path = tmp_path / "AVA_crlf.txt"
    path.write_bytes(("\r\n".join(lines[:10]) + "\r\n\r\n" + "\r\n".join(lines[10:]) + "\r\n").encode())
    pd.testing.assert_frame_equal(read_ava_txt(path), read_ava_txt(head_rows).iloc[:20])


def test_list_file_round_trip_and_errors(tmp_path):
    frame = pd.DataFrame({"image_id": [953619, 42039, 7], "label": [1, 0, 1]})
    path = tmp_path / "train.txt"
    write_list_file(frame, path)
    assert path.read_text() == "953619.jpg 1\n42039.jpg 0\n7.jpg 1\n"
    back = read_list_file(path)
    assert back["filename"].tolist() == ["953619.jpg", "42039.jpg", "7.jpg"]
    assert back["image_id"].tolist() == [953619, 42039, 7] and back["label"].tolist() == [1, 0, 1]
    # Names with spaces: the label follows the last space, as in convert_imageset.
    path.write_text("my photo.jpg 3\nsub/12.png 0\n")
    assert read_list_file(path)["filename"].tolist() == ["my photo.jpg", "sub/12.png"]
    assert read_list_file(path)["image_id"].isna().tolist() == [True, False]
    path.write_text("1.jpg 1\n\n2.jpg high\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: ") + "expected `<filename> <label>`"):
        read_list_file(path)


def test_id_list_errors_name_the_line(tmp_path):
    path = tmp_path / "generic_test.jpgl"
    path.write_text("12\n13\n12\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: ") + "image id 12 is listed twice"):
        read_id_list(path)
    path.write_text("12\n13x\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ")):
        read_id_list(path)


@pytest.mark.parametrize("text", [
    "p0.jpg  1\np1.jpg 0\r\n",                  # two spaces (a column-aligned list), CRLF
    "p0.jpg\t1\np1.jpg\t\t0\n",                 # tabs
    "\ufeff  p0.jpg 1 \r\np1.jpg \t 0\n\n",     # a byte-order mark, blanks around the entry, a blank last line
])
def test_list_file_label_is_the_last_field_after_any_blanks(tmp_path, text):
    path = tmp_path / "train.txt"
    path.write_text(text)
    frame = read_list_file(path)
    assert frame["filename"].tolist() == ["p0.jpg", "p1.jpg"] and frame["label"].tolist() == [1, 0]
    assert frame.index.tolist() == [1, 2]


@pytest.mark.parametrize("text, line, problem", [
    ("p0.jpg 1\np1.jpg\n", 2, "found only 'p1.jpg': no label after the file name"),
    ("p0.jpg 1\n\np1.jpg -1\n", 3, "with a non-negative integer label, found label '-1'"),
    ("p0.jpg 1e3\n", 1, "with a non-negative integer label, found label '1e3'"),
    ("p0.jpg 12345678901\n", 1, "found label '12345678901'"),
])
def test_list_file_errors_name_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "val.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"{path}:{line}: expected `<filename> <label>`") + ".*" +
                       re.escape(problem)):
        read_list_file(path)


def test_a_list_that_is_not_utf8_or_not_a_file_is_named(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"p0.jpg 1\ncaf\xe9.jpg 0\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: not UTF-8 text (byte 0xe9)")):
        read_list_file(path)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} is a folder, not a file")):
        read_list_file(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'none.txt'} does not exist")):
        read_list_file(tmp_path / "none.txt")


def test_a_name_is_joined_to_the_root_as_convert_imageset_joins_them(tmp_path):
    assert image_path(tmp_path, "/sub/1.jpg") == tmp_path / "sub" / "1.jpg"       # not /sub/1.jpg
    assert image_path(tmp_path, "sub/my photo.jpg") == tmp_path / "sub" / "my photo.jpg"


@pytest.mark.parametrize("field", ["1e3", "+5", "12.0", "\u00b2"])
def test_vote_counts_are_decimal_digits_only(tmp_path, head_rows, field):
    """pandas alone reads `1e3` as 1000 votes."""
    def edit(lines):
        fields = lines[1].split()
        fields[3] = field
        lines[1] = " ".join(fields)

    path = _write_rows(tmp_path, head_rows, edit)
    _expect_error(path, re.escape(f"2: column 4 (count_2) is not a non-negative integer: {field!r}"))


def test_every_text_input_may_start_with_a_byte_order_mark(tmp_path, shared_data):
    """Windows editors save UTF-8 with a BOM: AVA.txt, the official *.jpgl lists and list files all read alike."""
    ava = shared_data / "ava" / "AVA_head_rows1-1212.txt"
    bom = tmp_path / "AVA.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + ava.read_bytes())
    pd.testing.assert_frame_equal(read_ava_txt(bom), read_ava_txt(ava))
    ids = tmp_path / "generic_test.jpgl"
    ids.write_bytes(b"\xef\xbb\xbf953619\r\n953958\n")
    assert read_id_list(ids).tolist() == [953619, 953958]
    listed = tmp_path / "train.txt"
    listed.write_bytes(b"\xef\xbb\xbfa.jpg 1\n")
    assert read_list_file(listed).filename.tolist() == ["a.jpg"]
