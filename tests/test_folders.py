"""Folders walked as users expect (ilgnet.data.images.FolderScan): symbolic links to folders followed as `find -L`
follows them, each file and folder once whatever names lead to it, loops ended; `@LIST` only where no file has that
name; and names a spreadsheet would run as formulas neutralised in CSV only (CWE-1236)."""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.data.images import scan_folder
from ilgnet.fileio import spreadsheet_csv


def predict(stand_in, capsys, *arguments, backend: str = "opencv") -> tuple[int, pd.DataFrame | None, str]:
    """`ilgnet predict ARGUMENTS` with the stand-in model: (exit status, the CSV table, stderr)."""
    status = ilgnet(["predict", *map(str, arguments), "--model", str(stand_in["weights"]), "--variant", SMALL,
                     "--mean", str(stand_in["mean"]), "--backend", backend, "--quiet", "--workers", "1"])
    out = capsys.readouterr()
    return status, pd.read_csv(io.StringIO(out.out)) if out.out else None, out.err


def case_07(bugcase) -> Path:
    """Case 07 with its link made (a copy may keep it as a small file holding the target's name)."""
    case = bugcase("07-symlinked-subfolder")
    link = case / "photos" / "2023"
    if not link.is_symlink():
        link.unlink()
        link.symlink_to(Path("..") / "elsewhere" / "2023")
    return case


CASE_07 = ["photos/2023/s0.jpg", "photos/2023/s1.jpg", "photos/2023/s2.jpg", "photos/trip/p0.jpg",
           "photos/trip/p1.jpg"]


@pytest.mark.parametrize("backend", ["opencv", pytest.param("caffe", marks=pytest.mark.caffe)])
def test_case_07_photos_in_a_symlinked_subfolder_are_scored(bugcase, stand_in, capsys, monkeypatch, backend):
    """The three photos under the link are scored (as `find -L` finds them), by either backend; a link loop added
    below ends there."""
    monkeypatch.chdir(case_07(bugcase))
    if backend == "caffe":
        from ilgnet.bvlc.tools import import_caffe
        import_caffe()
    status, table, err = predict(stand_in, capsys, "photos", backend=backend)
    assert status == 0 and list(table.path) == CASE_07, err
    Path("photos/trip/loop").symlink_to("..")
    status, looped, err = predict(stand_in, capsys, "photos", backend=backend)
    assert status == 0 and list(looped.path) == CASE_07
    assert looped.p_high.tolist() == table.p_high.tolist()
    assert err.splitlines()[-1] == ("ilgnet predict: scored 5 photos, not scored 0, 1 repeated name of a file or "
                                    "folder found already passed over (each photo is scored once)")


def make_photos(folder: Path, source: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source, folder / name)


@pytest.fixture
def photo(stand_in) -> Path:
    return next(p for p in sorted(stand_in["photos"].glob("*.jpg")) if p.name != "broken.jpg")


def test_each_file_and_folder_is_walked_once_whatever_leads_to_it(tmp_path, photo):
    root = tmp_path / "photos"
    make_photos(root / "a", photo, ["1.jpg", "2.jpg"])
    make_photos(tmp_path / "outside", photo, ["3.jpg"])
    (root / "b").symlink_to("a")                            # a second name for a folder
    (root / "c").symlink_to(tmp_path / "outside")           # a folder elsewhere
    (root / "a" / "up").symlink_to("..")                    # a loop
    (root / "a" / "self").symlink_to(".")                   # another
    os.link(root / "a" / "1.jpg", root / "hard.jpg")        # the same file under a second name
    (root / "soft.jpg").symlink_to("a/2.jpg")               # and through a link to it
    (root / "gone.jpg").symlink_to("nowhere.jpg")           # a broken link
    scan = scan_folder(root)
    assert [str(p.relative_to(root)) for p in scan.photos] == ["a/1.jpg", "a/2.jpg", "c/3.jpg"]
    assert scan.not_photos == [(root / "gone.jpg", "broken symbolic link (its target does not exist)")]
    assert scan.repeated == 5                               # b, up, self, hard.jpg, soft.jpg


def test_a_photo_named_twice_is_scored_once(stand_in, tmp_path, photo, capsys, monkeypatch):
    """A folder and a file in it, `./a` and `a`, a folder given twice: scored once, under the first name."""
    monkeypatch.chdir(tmp_path)
    make_photos(Path("album"), photo, ["x.jpg", "y.jpg"])
    status, table, err = predict(stand_in, capsys, "album/y.jpg", "./album/y.jpg", "album", "album/", "album/x.jpg")
    assert status == 0 and list(table.path) == ["album/y.jpg", "album/x.jpg"]
    assert err.splitlines()[-1] == ("ilgnet predict: scored 2 photos, not scored 0, 4 repeated names of a file or "
                                    "folder found already passed over (each photo is scored once)")


def test_at_names_a_list_only_where_no_file_has_that_name(stand_in, tmp_path, photo, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photos(Path("."), photo, ["@x.jpg", "y.jpg"])
    status, table, _ = predict(stand_in, capsys, "@x.jpg")             # a photo named @x.jpg
    assert status == 0 and list(table.path) == ["'@x.jpg"]             # as CSV writes it for spreadsheets
    Path("list").write_text("y.jpg\n./@x.jpg\n")
    status, table, _ = predict(stand_in, capsys, "@list")              # no file named @list: the list file
    assert status == 0 and list(table.path) == ["y.jpg", "'@x.jpg"]
    Path("@list").write_text("a text file named @list\n")
    status, _, err = predict(stand_in, capsys, "@list")                # now the file @list itself, not a photo
    assert status == 1 and "not scored: @list: not a decodable image" in err
    status, _, err = predict(stand_in, capsys, "@nolist")
    assert (status, err) == (1, "ilgnet predict: error: @nolist: no file of that name, and no list file nolist\n")


FORMULA_NAMES = ["=cmd|' -C calc'!A0.jpg", "+SUM(1,1).jpg", "-2+3.jpg"]


def test_case_13_csv_cells_are_text_in_a_spreadsheet_and_other_formats_keep_the_names(bugcase, stand_in, tmp_path,
                                                                                      capsys, monkeypatch):
    """OWASP's advice against CSV injection (CWE-1236): a leading ' makes a spreadsheet show the cell as text. JSON
    lines and Parquet are read by programs, which must get the exact names."""
    monkeypatch.chdir(bugcase("13-csv-formula-names"))
    names = [FORMULA_NAMES[0], FORMULA_NAMES[1], "./" + FORMULA_NAMES[2]]
    assert predict(stand_in, capsys, *names, "--out", "s.csv")[0] == 0
    assert pd.read_csv("s.csv").path.tolist() == ["'" + name for name in FORMULA_NAMES]
    assert predict(stand_in, capsys, *names, "--out", "s.jsonl")[0] == 0
    assert [json.loads(line)["path"] for line in Path("s.jsonl").read_text().splitlines()] == FORMULA_NAMES
    assert predict(stand_in, capsys, *names, "--out", "s.parquet")[0] == 0
    assert pd.read_parquet("s.parquet").path.tolist() == FORMULA_NAMES


def test_spreadsheet_csv_neutralises_text_cells_only():
    frame = pd.DataFrame({"name": ["=1+2", "+3", "-4", "@SUM(A1)", "\tx", "\rx", "plain", "a=b", "'quoted"],
                          "value": [-1.5, 2, -3, 4, 5, 6, 7, 8, 9]})
    table = pd.read_csv(io.StringIO(spreadsheet_csv(frame)), keep_default_na=False)
    assert table.name.tolist() == ["'=1+2", "'+3", "'-4", "'@SUM(A1)", "'\tx", "'\rx", "plain", "a=b", "'quoted"]
    assert table.value.tolist() == frame.value.tolist()           # numbers, negative ones too, as they are
