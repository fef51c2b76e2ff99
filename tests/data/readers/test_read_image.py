"""PNG/JPEG/BMP/TIFF reader: channel order, bit depth, label maps, corrupt files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from umedsam.data.readers import image_format, read_image
from umedsam.errors import InputError

pytest.importorskip("PIL")


def test_png_rgb_order_grey_and_16_bit(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # OpenCV writes BGR
    image, meta = read_image(tmp_path / "c.png")
    assert image.shape == (4, 6, 3)
    assert image[0, 0].tolist() == [200, 0, 0]
    assert meta.channels == 3
    assert meta.shape == (4, 6)
    assert meta.spacing == (1.0, 1.0)
    assert meta.affine is None
    assert meta.source_format == "png"

    grey = np.arange(24, dtype=np.uint8).reshape(4, 6)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    image, meta = read_image(tmp_path / "g.png")
    np.testing.assert_array_equal(image, grey)
    assert meta.channels == 1

    deep = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    image, _ = read_image(tmp_path / "d.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, deep)


def test_rgba_drops_alpha_and_jpeg_bmp_read(tmp_path: Path) -> None:
    from PIL import Image

    rgba = np.zeros((5, 5, 4), dtype=np.uint8)
    rgba[..., 1] = 100
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image, _ = read_image(tmp_path / "a.png")
    assert image.shape == (5, 5, 3)
    assert image[0, 0].tolist() == [0, 100, 0]
    picture = np.full((8, 8, 3), 128, dtype=np.uint8)
    for name in ("p.jpg", "p.bmp"):
        cv2.imwrite(str(tmp_path / name), picture)
        image, meta = read_image(tmp_path / name)
        assert image.shape[:2] == (8, 8)
        assert meta.source_format in ("jpeg", "bmp")


def test_palette_and_colour_label_maps(tmp_path: Path) -> None:
    from PIL import Image

    ids = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    pal = Image.fromarray(ids, "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    labels, _ = read_image(tmp_path / "pal.png", labels=True)
    np.testing.assert_array_equal(labels, ids)
    picture, _ = read_image(tmp_path / "pal.png")
    assert picture.shape == (2, 3, 3)  # as an image, the palette is expanded

    colour = np.zeros((2, 3, 3), dtype=np.uint8)
    colour[0, 1] = (255, 0, 0)
    colour[1, 2] = (0, 0, 255)
    Image.fromarray(colour).save(tmp_path / "col.png")
    labels, _ = read_image(tmp_path / "col.png", labels=True)
    # sorted RGB: black 0, (0,0,255) 1, (255,0,0) 2
    np.testing.assert_array_equal(labels, [[0, 2, 0], [0, 0, 1]])


def test_tiff_page_and_stack(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    page = np.arange(20, dtype=np.uint16).reshape(4, 5)
    tifffile.imwrite(tmp_path / "p.tif", page)
    image, meta = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(image, page)
    assert meta.shape == (4, 5)
    stack = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7)
    tifffile.imwrite(tmp_path / "s.tiff", stack, photometric="minisblack")
    volume, meta = read_image(tmp_path / "s.tiff")
    assert volume.shape == (3, 6, 7)
    assert meta.is_3d


def test_corrupt_files_give_one_line_errors(tmp_path: Path) -> None:
    cv2.imwrite(
        str(tmp_path / "ok.png"),
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8),
    )
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("definitely not a PNG")
    (tmp_path / "zero.jpg").write_bytes(b"")
    for name, pattern in (
        ("cut.png", "truncated"),
        ("text.png", "not a readable image"),
        ("zero.jpg", "empty"),
    ):
        with pytest.raises(InputError, match=pattern) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
        assert "\n" not in str(info.value)


def test_enormous_declared_png(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)  # 60000^2 RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(png)
    with pytest.raises(InputError, match="huge.png"):
        read_image(tmp_path / "huge.png", max_bytes=10**9)


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(tmp_path / "x.gif")
    assert image_format(tmp_path) == "dicom"  # folders are DICOM series


def test_missing_pillow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from umedsam.errors import MissingExtraError

    cv2.imwrite(str(tmp_path / "g.png"), np.zeros((2, 2), dtype=np.uint8))
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingExtraError, match=r"umedsam\[images\]"):
        read_image(tmp_path / "g.png")
