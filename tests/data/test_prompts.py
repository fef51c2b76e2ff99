"""Box prompt files: JSON and CSV schemas, validation errors naming the file and the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from umedsam.data.prompts import load_box_prompts, load_boxes
from umedsam.errors import InputError


def _json(tmp_path: Path, content: object, name: str = "b.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


def test_json_forms(tmp_path: Path) -> None:
    plain = load_boxes(_json(tmp_path, [[1, 2, 3, 4], [0, 0, 5, 5]]))
    assert plain.dtype == np.int64
    assert plain.tolist() == [[1, 2, 3, 4], [0, 0, 5, 5]]
    prompts = load_box_prompts(
        _json(
            tmp_path, {"boxes": [{"name": "liver", "box": [1, 2, 0, 3, 4, 2]}, [0, 0, 1, 1, 1, 1]]}
        )
    )
    assert prompts.boxes.shape == (2, 6)
    assert prompts.names == ("liver", "")
    assert load_boxes(_json(tmp_path, [[1.4, 2.6, 3, 4]])).tolist() == [[1, 3, 3, 4]]


def test_csv_any_column_order_and_names(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("name,y_min,x_min,x_max,y_max\nlesion, 2,1,3,4\n\nother,0,0,1,1\n")
    prompts = load_box_prompts(path, shape=(10, 10))
    assert prompts.boxes.tolist() == [[1, 2, 3, 4], [0, 0, 1, 1]]
    assert prompts.names == ("lesion", "other")
    path.write_text("x_min,y_min,z_min,x_max,y_max,z_max\n1,2,3,4,5,6\n")
    assert load_boxes(path).tolist() == [[1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ({"box": [1, 2, 3, 4]}, "'boxes' key"),
        ([], "no boxes"),
        ([[1, 2, 3]], "box 1: expected 4 numbers"),
        ([[1, 2, 3, 4], [1, 2, 3, 4, 5, 6]], "mix 2D"),
        ([[5, 2, 3, 4]], "x_min 5 > x_max 3"),
        ([[-1, 2, 3, 4]], "negative"),
        ([[1, "a", 3, 4]], "numbers"),
        ([[1, 2, 3, float("inf")]], "finite"),
        ([{"name": "x"}], "'box' list"),
    ],
)
def test_json_errors_name_file_and_box(tmp_path: Path, content: object, pattern: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=pattern) as info:
        load_boxes(path)
    assert "bad.json" in str(info.value)


def test_shape_checks(tmp_path: Path) -> None:
    path = _json(tmp_path, [[0, 0, 9, 4]])
    assert load_boxes(path, shape=(5, 10)).shape == (1, 4)
    with pytest.raises(InputError, match=r"x_max = 9 is outside the image \(x size 9"):
        load_boxes(path, shape=(5, 9))
    with pytest.raises(InputError, match="boxes must be 3D"):
        load_boxes(path, shape=(3, 5, 10))
    box3d = _json(tmp_path, [[0, 0, 0, 1, 1, 4]], "z.json")
    with pytest.raises(InputError, match="z_max = 4"):
        load_boxes(box3d, shape=(4, 5, 5))


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_boxes(tmp_path / "x.json")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks"):
        load_boxes(tmp_path / "x.csv")
    (tmp_path / "x.txt").write_text("1 2 3 4")
    with pytest.raises(InputError, match=".json or .csv"):
        load_boxes(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_boxes(tmp_path / "missing.json")
