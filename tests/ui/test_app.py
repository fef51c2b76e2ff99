"""Request handlers of the web app on a real server (no browser), with the tiny random model."""

from __future__ import annotations

import http.client
import io
import zipfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import cv2
import numpy as np
import pytest

from umedsam.models.cards import DEFAULT_MODEL

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from umedsam.ui.app import UIConfig, example_cases  # noqa: E402
from umedsam.ui.images import display_stem, extract_series_zip, upload_suffix  # noqa: E402

from .conftest import BoxBackend, ClickBackend, Client  # noqa: E402


class CountingLoader:
    """Engine loader that builds the tiny model and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        import torch

        from umedsam.inference.backends.torch import TorchBackend
        from umedsam.models.registry import build_model

        self.calls += 1
        torch.manual_seed(0)
        return TorchBackend(build_model("test_tiny"))


@pytest.fixture
def app_client(serve):
    """(client, app, loader) for an app with default limits and the tiny model."""
    loader = CountingLoader()
    base, app = serve(UIConfig(), loader)
    return Client(base), app, loader


def wait_until_encoded(client, sid: str, timeout: float = 60.0) -> dict:
    """Poll the session status until its embeddings are ready; the last status."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/api/sessions/{sid}/status").json()
        if status["ready"] or status["error"] or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ----- pure helpers ----------------------------------------------------------------------
def test_upload_suffix_keeps_only_known_suffixes():
    assert upload_suffix("../../a/b/scan.NII.GZ") == ".nii.gz"
    assert upload_suffix("C:\\data\\x.png") == ".png"
    with pytest.raises(ValueError, match="upload one of"):
        upload_suffix("evil.exe")
    with pytest.raises(ValueError, match="upload one of"):
        upload_suffix(".png")
    assert display_stem("../../etc/pass wd;rm.nii.gz") == "pass_wd_rm"
    assert display_stem("....png") == "image"


def test_config_rejects_bad_limits():
    with pytest.raises(ValueError, match="limits must be > 0"):
        UIConfig(max_upload_mb=0)
    with pytest.raises(ValueError, match="max_sessions"):
        UIConfig(max_sessions=0)
    from umedsam.cli.main import main

    assert main(["ui", "--port", "70000"]) == 2
    assert main(["ui", "--max-upload-mb", "-1"]) == 2


def test_zip_members_never_become_paths(tmp_path):
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil.dcm", b"a" * 10)
        zf.writestr("/abs/evil2.dcm", b"b" * 10)
        zf.writestr("sub/dir/", b"")
    target = tmp_path / "out" / "series"
    extract_series_zip(archive, target, max_bytes=1000)
    assert files_under(tmp_path / "out") == ["series/00000.dcm", "series/00001.dcm"]
    assert not (tmp_path / "evil.dcm").exists()
    with pytest.raises(ValueError, match="MiB limit"):
        extract_series_zip(archive, tmp_path / "small", max_bytes=5)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        extract_series_zip(tmp_path / "bad.zip", tmp_path / "x", max_bytes=1000)


# ----- pages and examples ----------------------------------------------------------------
def test_pages_and_static_whitelist(app_client):
    client, _, _ = app_client
    page = client.get("/")
    assert page.status == 200
    assert b'<canvas id="canvas"' in page.body
    assert client.get("/static/app.js").status == 200
    assert client.get("/static/style.css").status == 200
    assert client.get("/static/session.py").status == 404
    assert client.get("/static/..%2Fapp.py").status == 404
    config = client.get("/api/config").json()
    assert config["max_upload_mb"] == 256.0
    assert config["model_loaded"] is False


def test_examples_open_by_name_only(app_client):
    client, app, loader = app_client
    examples = example_cases()
    if not examples:
        pytest.skip("bundled examples not installed")
    assert client.get("/api/config").json()["examples"] == list(examples)
    for name in (
        "../gts/2DBox_US_HC18_002",
        "..%2Fgts%2F2DBox_US_HC18_002",
        "%2Fetc%2Fpasswd",
        "2DBox_US_HC18_002.npz",
        "nope",
    ):
        assert client.post(f"/api/examples/{name}").status == 404, name
    assert len(app.state.store) == 0
    name = next(n for n in examples if n.startswith("2D"))
    info = client.post(f"/api/examples/{quote(name)}").json()
    assert info["name"] == name
    assert info["has_ground_truth"] is True
    assert info["stored_boxes"]
    result = client.post_json(
        f"/api/sessions/{info['session']}/segment", {"boxes": info["stored_boxes"]}
    ).json()
    assert 0.0 <= result["dsc"] <= 1.0  # random tiny model: only the readout is checked
    assert loader.calls == 1


# ----- uploads ---------------------------------------------------------------------------
def test_upload_limit_from_content_length(serve):
    base, app = serve(UIConfig(max_upload_mb=0.01), CountingLoader())
    client = Client(base)
    reply = client.post("/api/upload?name=big.png", b"x" * 20_000)
    assert reply.status == 413
    assert "0.01 MiB upload limit" in reply.json()["error"]
    assert files_under(app.state.store.root) == []
    assert len(app.state.store) == 0


def test_upload_limit_while_streaming(serve):
    """A chunked upload (no Content-Length) is cut off once it passes the limit."""
    base, app = serve(UIConfig(max_upload_mb=0.01), CountingLoader())
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    chunks = (b"y" * 4096 for _ in range(10))
    conn.request("POST", "/api/upload?name=big.nii.gz", body=chunks, encode_chunked=True)
    reply = conn.getresponse()
    assert reply.status == 413
    assert b"upload limit" in reply.read()
    conn.close()
    assert files_under(app.state.store.root) == []


def test_upload_refusals(app_client, make_disk):
    client, app, _ = app_client
    assert "upload one of" in client.post("/api/upload?name=a.exe", b"MZ").json()["error"]
    assert client.post("/api/upload", b"abc").status == 400  # no name at all
    empty = client.post("/api/upload?name=a.png", b"")
    assert empty.status == 400
    assert "empty" in empty.json()["error"]
    garbage = client.post("/api/upload?name=scan.png", b"\x89PNG not really")
    assert garbage.status == 400
    message = garbage.json()["error"]
    assert "scan.png" in message
    assert str(app.state.store.root) not in message  # no server paths in messages
    img, _ = make_disk()
    bad_window = client.post("/api/upload?name=a.png&window=sunset", png_bytes(img))
    assert bad_window.status == 400
    assert "unknown CT window" in bad_window.json()["error"]
    assert files_under(app.state.store.root) == []


def test_upload_name_cannot_choose_the_path(app_client, make_disk, tmp_path):
    client, app, _ = app_client
    img, _ = make_disk()
    name = quote("../../../../evil.png", safe="")
    info = client.post(f"/api/upload?name={name}", png_bytes(img)).json()
    assert info["name"] == "evil"
    root = app.state.store.root
    assert files_under(root) == [f"{info['session']}/upload.png"]
    assert not (root.parent / "evil.png").exists()


def test_host_header_checked_when_local(app_client):
    client, _, _ = app_client
    assert client.get("/api/config", headers={"Host": "attacker.example"}).status == 400
    assert client.get("/api/config", headers={"Host": "localhost:1234"}).status == 200


# ----- segmentation and downloads ----------------------------------------------------------
def test_segment_2d_png_and_download(app_client, make_disk, tmp_path):
    client, _, loader = app_client
    img, _ = make_disk()  # (96, 128, 3)
    info = client.post("/api/upload?name=disk.png", png_bytes(img[:, :, ::-1])).json()
    assert (info["is_3d"], info["height"], info["width"]) == (False, 96, 128)
    assert info["formats"] == ["nifti", "png", "npz"]
    sid = info["session"]
    status = wait_until_encoded(client, sid)  # the image is encoded as soon as it is opened
    assert {k: status[k] for k in ("embedded", "total", "ready", "error")} == {
        "embedded": 1,
        "total": 1,
        "ready": True,
        "error": None,
    }
    assert status["model"] == DEFAULT_MODEL and status["seconds"] >= 0
    assert loader.calls == 1
    boxes = [[38, 26, 82, 70], [5, 5, 30, 30]]
    single = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": boxes[:1]}).json()
    result = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": boxes}).json()
    assert [o["label"] for o in result["objects"]] == [1, 2]
    assert [o["box"] for o in result["objects"]] == boxes
    assert "dsc" not in result  # uploads have no reference mask
    mask_png = client.get(f"/api/sessions/{sid}/mask/0.png")
    rgba = cv2.imdecode(np.frombuffer(mask_png.body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (96, 128, 4)
    drawn = int((rgba[..., 3] > 0).sum())
    assert drawn == sum(o["voxels"] for o in result["objects"])
    slice_png = client.get(f"/api/sessions/{sid}/image/0.png")
    shown = cv2.imdecode(np.frombuffer(slice_png.body, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == (96, 128, 3)

    png = client.get(f"/api/sessions/{sid}/download/png")
    assert png.status == 200
    assert 'filename="disk_mask.png"' in png.headers["content-disposition"]
    labels = cv2.imdecode(np.frombuffer(png.body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (96, 128)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert int((labels > 0).sum()) == drawn
    npz_path = tmp_path / "m.npz"
    npz_path.write_bytes(client.get(f"/api/sessions/{sid}/download/npz").body)
    with np.load(npz_path) as data:
        np.testing.assert_array_equal(data["segs"], labels)
    nib = pytest.importorskip("nibabel")
    nii_path = tmp_path / "m.nii.gz"
    nii_path.write_bytes(client.get(f"/api/sessions/{sid}/download/nifti").body)
    np.testing.assert_array_equal(np.asarray(nib.load(nii_path).dataobj)[:, :, 0].T, labels)

    # undo: the remaining box is served from the cache, and the model was loaded only once
    undo = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": boxes[:1]}).json()
    assert undo["objects"] == single["objects"]
    assert undo["version"] == result["version"] + 1 == single["version"] + 2
    cleared = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": []}).json()
    assert cleared["objects"] == []
    assert client.get(f"/api/sessions/{sid}/download/png").status == 400
    assert loader.calls == 1


def test_segment_3d_nifti_keeps_geometry(app_client, make_sphere, tmp_path):
    nib = pytest.importorskip("nibabel")
    client, _, _ = app_client
    vol, sphere = make_sphere()  # (12, 64, 64) uint8, z y x
    affine = np.array([[-0.8, 0, 0, 30.0], [0, 0.8, 0, -12.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]])
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0).astype(np.int16) * 4 + 100, affine), src)
    info = client.post("/api/upload?name=ct.nii.gz", src.read_bytes()).json()
    assert (info["is_3d"], info["depth"], info["height"], info["width"]) == (True, 12, 64, 64)
    assert info["spacing"] == pytest.approx([2.5, 0.8, 0.8])
    assert info["formats"] == ["nifti", "npz"]
    sid = info["session"]
    zs = np.flatnonzero(sphere.any(axis=(1, 2)))
    box = [16, 16, int(zs[0]), 48, 48, int(zs[-1])]
    result = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [box]}).json()
    assert result["objects"][0]["size_mm"] == pytest.approx(
        result["objects"][0]["voxels"] * 2.5 * 0.8 * 0.8, rel=1e-3
    )
    mid = client.get(f"/api/sessions/{sid}/mask/{int(zs.mean())}.png")
    assert mid.status == 200
    assert client.get(f"/api/sessions/{sid}/mask/12.png").status == 400
    out = tmp_path / "mask.nii.gz"
    reply = client.get(f"/api/sessions/{sid}/download/nifti")
    assert 'filename="ct_mask.nii.gz"' in reply.headers["content-disposition"]
    out.write_bytes(reply.body)
    mask = nib.load(out)
    assert mask.shape == (64, 64, 12)
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    labels = np.asarray(mask.dataobj).transpose(2, 1, 0)
    assert int((labels == 1).sum()) == result["objects"][0]["voxels"]
    assert not labels[: zs[0]].any()  # stays in the z-range
    assert not labels[zs[-1] + 1 :].any()
    png = client.get(f"/api/sessions/{sid}/download/png")
    assert png.status == 400
    assert "2D masks only" in png.json()["error"]


def test_bad_requests_get_clear_errors(app_client, make_disk):
    client, _, _ = app_client
    img, _ = make_disk()
    sid = client.post("/api/upload?name=d.png", png_bytes(img)).json()["session"]
    seg = f"/api/sessions/{sid}/segment"
    inverted = client.post_json(seg, {"boxes": [[50, 50, 10, 10]]})
    assert inverted.status == 400
    assert "inverted" in inverted.json()["error"]
    outside = client.post_json(seg, {"boxes": [[0, 0, 500, 50]]})
    assert "outside the 128x96" in outside.json()["error"]
    assert "(N, 4)" in client.post_json(seg, {"boxes": [[1, 2, 3]]}).json()["error"]
    assert client.post_json(seg, {"boxes": [["a", 1, 2, 3]]}).status == 400
    assert client.post(seg, b"{not json").status == 400
    assert client.post(seg, b"[" + b"0," * 600_000 + b"0]").status == 413
    assert "nothing to download" in client.get(f"/api/sessions/{sid}/download/png").json()["error"]
    assert "format must be" in client.get(f"/api/sessions/{sid}/download/exe").json()["error"]
    assert client.post_json("/api/sessions/nope/segment", {"boxes": []}).status == 404
    assert client.get("/api/sessions/nope/image/0.png").status == 404
    assert client.get(f"/api/sessions/{sid}/other/0.png").status == 404


def test_least_recently_used_session_is_closed(serve, make_disk):
    base, app = serve(UIConfig(max_sessions=1), CountingLoader())
    client = Client(base)
    img, _ = make_disk()
    first = client.post("/api/upload?name=a.png", png_bytes(img)).json()["session"]
    second = client.post("/api/upload?name=b.png", png_bytes(img)).json()["session"]
    assert client.get(f"/api/sessions/{first}/image/0.png").status == 404
    assert client.get(f"/api/sessions/{second}/image/0.png").status == 200
    assert files_under(app.state.store.root) == [f"{second}/upload.png"]


def test_dicom_series_zip_upload(app_client, shared_dir):
    pytest.importorskip("pydicom")
    series = shared_dir / "data" / "formats" / "dicom" / "ct_series"
    if not series.is_dir():
        pytest.skip("DICOM test series not available")
    client, _, _ = app_client
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(series.glob("ct_*.dcm")):
            zf.write(path, f"series/{path.name}")
    info = client.post("/api/upload?name=ct.zip", buffer.getvalue()).json()
    assert info["is_3d"] is True
    assert info["depth"] == 2
    assert info["modality"] == "CT"
    assert info["source_format"] == "dicom"


def test_uncertainty_overlay_when_available(app_client, make_disk, make_sphere):
    from umedsam.ui.heat import uncertainty_tools

    client, _, _ = app_client
    available = uncertainty_tools() is not None
    img, _ = make_disk()
    info = client.post("/api/upload?name=d.png", png_bytes(img)).json()
    assert info["uncertainty"] is available
    sid = info["session"]
    result = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [[38, 26, 82, 70]]})
    result = result.json()
    assert result["uncertainty"] is available
    heat = client.get(f"/api/sessions/{sid}/uncertainty/0.png")
    if not available:
        assert heat.status == 400
        assert result["objects"][0]["confidence"] is None
        return
    rgba = cv2.imdecode(np.frombuffer(heat.body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (96, 128, 4)
    assert rgba[..., 3].max() > 0  # a random model is unsure somewhere
    assert 0.0 <= result["objects"][0]["confidence"] <= 1.0

    vol, _ = make_sphere()
    buffer = io.BytesIO()
    np.savez(buffer, imgs=vol, boxes=np.array([[20, 20, 4, 44, 44, 8]]))
    sid = client.post("/api/upload?name=v.npz", buffer.getvalue()).json()["session"]
    result = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [[20, 20, 4, 44, 44, 8]]})
    assert result.json()["uncertainty"] is True
    inside = cv2.imdecode(
        np.frombuffer(client.get(f"/api/sessions/{sid}/uncertainty/6.png").body, np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    outside = cv2.imdecode(
        np.frombuffer(client.get(f"/api/sessions/{sid}/uncertainty/0.png").body, np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    assert inside[..., 3].max() > 0
    assert outside[..., 3].max() == 0  # slice 0 lies outside the box's z-range


@pytest.mark.onnx
def test_app_opens_the_engine_predict_uses(serve, tmp_path: Path) -> None:
    """Without a loader the app opens its engine with open_engine, here ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    import torch

    from umedsam.models.registry import build_model

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(build_model("test_tiny").state_dict(), ckpt)
    config = UIConfig(model="test_tiny", checkpoint=str(ckpt), engine="onnx", threads=1)
    base, app = serve(config)
    client = Client(base)
    config_now = client.get("/api/config").json()
    assert config_now["engine"] == "onnx"
    assert config_now["engine_running"] is None  # nothing opened yet
    image = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(image, (32, 32), 14, (200, 200, 200), -1)
    opened = client.post("/api/upload?name=disk.png", png_bytes(image)).json()
    segment = f"/api/sessions/{opened['session']}/segment"
    result = client.post_json(segment, {"boxes": [[16, 16, 48, 48]]}).json()
    assert result["objects"][0]["voxels"] > 0
    assert app.state.model.backend().name == "onnx"
    assert client.get("/api/config").json()["engine_running"] == "onnx"
    with pytest.raises(ValueError, match="unknown engine"):
        UIConfig(engine="tensorrt")


def test_clicks_correct_objects_in_2d_and_3d(serve, make_sphere, tmp_path):
    """Box, then positive and negative clicks: each request segments the corrected object."""
    loader = CountingLoader()
    base, app = serve(UIConfig(model="test_tiny"), loader)
    client = Client(base)
    assert "click" in client.get("/api/config").json()["prompts"]
    image = np.zeros((64, 64, 3), np.uint8)
    cv2.circle(image, (32, 32), 14, (200, 200, 200), -1)
    sid = client.post("/api/upload?name=disk.png", png_bytes(image)).json()["session"]
    url = f"/api/sessions/{sid}/segment"
    box = [16, 16, 48, 48]
    first = client.post_json(url, {"boxes": [box]}).json()
    assert first["objects"][0]["clicks"] == 0
    one = client.post_json(url, {"boxes": [box], "clicks": [[[32, 32, 1]]]}).json()
    two = client.post_json(url, {"boxes": [box], "clicks": [[[32, 32, 1], [5, 5, 0]]]}).json()
    assert one["objects"][0]["clicks"] == 1 and two["objects"][0]["clicks"] == 2
    assert two["version"] == 3
    from umedsam.ui.heat import uncertainty_tools

    if uncertainty_tools() is not None:  # a corrected object gets its own confidence and map
        assert 0.0 <= two["objects"][0]["confidence"] <= 1.0
        assert two["uncertainty"] is True
        heat = client.get(f"/api/sessions/{sid}/uncertainty/0.png")
        assert heat.status == 200
    session = app.state.store.get(sid)
    assert session.segs is not None and session.segs.shape == (64, 64)
    for bad, message in (
        ({"boxes": [box], "clicks": [[[99, 5, 1]]]}, "outside the image"),
        ({"boxes": [box], "clicks": [[[5, 5, 2]]]}, "1 or 0"),
        ({"boxes": [box], "clicks": [[[5, 5]]]}, "a click is"),
        ({"boxes": [box], "clicks": [[], []]}, "at most one list per box"),
    ):
        reply = client.post_json(url, bad)
        assert reply.status == 400 and message in reply.json()["error"]
    # a volume: the correction re-propagates on the session's cached slice embeddings
    import nibabel as nib

    vol, mask = make_sphere(10, 40, 40)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0).astype(np.float32), np.eye(4)), path)
    sid3 = client.post("/api/upload?name=vol.nii.gz", path.read_bytes()).json()["session"]
    status = wait_until_encoded(client, sid3)
    assert status["embedded"] == 10  # every slice, in the background
    assert status["model"] == "test_tiny" and status["seconds"] > 0  # shown in the page
    url3 = f"/api/sessions/{sid3}/segment"
    box3 = [8, 8, 2, 32, 32, 7]
    client.post_json(url3, {"boxes": [box3]})
    session3 = app.state.store.get(sid3)
    encoded = len(session3._embeddings)
    assert encoded == 10
    assert session3._embeddings.megabytes == 10 * 32 * 16 * 16 * 2 / 2**20  # float16 slices
    corrected = client.post_json(url3, {"boxes": [box3], "clicks": [[[20, 20, 4, 1]]]})
    assert corrected.status == 200 and corrected.json()["objects"][0]["clicks"] == 1
    per_slice = corrected.json()["objects"][0]["slice_iou"]
    assert len(per_slice) == 10 and per_slice[0] is None and per_slice[4] is not None
    assert len(session3._embeddings) == encoded  # no slice encoded again


def test_box_model_refuses_clicks_with_a_hint(app_client):
    client, _, _ = app_client
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    reply = client.post_json(
        f"/api/sessions/{sid}/segment", {"boxes": [[4, 4, 28, 28]], "clicks": [[[16, 16, 1]]]}
    )
    assert reply.status == 400
    assert "not trained to take clicks" in reply.json()["error"]
    assert "umedsam_interactive" in reply.json()["error"]


def test_new_objects_never_overwrite_earlier_ones_unless_asked(serve):
    base, _ = serve(UIConfig(), BoxBackend)
    client = Client(base)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    url = f"/api/sessions/{sid}/segment"
    boxes = [[8, 8, 40, 40], [24, 24, 56, 56]]  # overlapping on 24..40
    kept = client.post_json(url, {"boxes": boxes}).json()
    taken = client.post_json(url, {"boxes": boxes, "overwrite": True}).json()
    first_kept, first_taken = kept["objects"][0]["voxels"], taken["objects"][0]["voxels"]
    assert first_kept == 32 * 32  # the earlier object keeps the overlap
    assert first_taken == 32 * 32 - 16 * 16  # the later one took it
    assert kept["objects"][1]["voxels"] == 32 * 32 - 16 * 16


def test_work_is_saved_and_restored_after_a_restart(serve, tmp_path):
    """Every change is saved; the same image opened on a new server offers to restore it."""
    work = tmp_path / "work"
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = 200
    base, _ = serve(UIConfig(model="test_tiny", workdir=str(work)), ClickBackend)
    client = Client(base)
    info = client.post("/api/upload?name=sq.png", png_bytes(image)).json()
    assert info["saved"] is None
    boxes, clicks = [[8, 8, 40, 40], [24, 24, 56, 56]], [[], [[30, 30, 0]]]
    result = client.post_json(
        f"/api/sessions/{info['session']}/segment", {"boxes": boxes, "clicks": clicks}
    ).json()
    assert result["autosave_error"] is None
    (folder,) = work.iterdir()
    with np.load(folder / "labels.npz") as data:
        saved_segs = data["segs"]
    assert saved_segs.shape == (64, 64) and set(np.unique(saved_segs)) == {0, 1, 2}

    base2, _ = serve(UIConfig(model="test_tiny", workdir=str(work)), ClickBackend)  # restart
    client2 = Client(base2)
    again = client2.post("/api/upload?name=renamed.png", png_bytes(image)).json()
    assert again["saved"]["objects"] == 2
    restored = client2.get(f"/api/sessions/{again['session']}/saved").json()
    assert [o["box"] for o in restored["objects"]] == boxes
    assert [o["clicks"] for o in restored["objects"]] == clicks
    shifted = np.roll(image, 3, axis=1)  # another image: no saved work
    other = client2.post("/api/upload?name=other.png", png_bytes(shifted)).json()
    assert other["saved"] is None
    assert client2.get(f"/api/sessions/{other['session']}/saved").status == 404


def test_failed_autosave_is_reported_and_work_kept(serve, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    base, app = serve(UIConfig(workdir=str(blocker)), BoxBackend)
    client = Client(base)
    image = np.zeros((32, 32, 3), np.uint8)
    image[4:28, 4:28] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    result = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [[4, 4, 28, 28]]})
    assert result.status == 200
    assert "autosave failed" in result.json()["autosave_error"]
    assert app.state.store.get(sid).segs.any()  # the work is still there


def test_scribble_strokes_reach_the_model_as_points_along_them(serve):
    base, app = serve(UIConfig(model="test_tiny"), ClickBackend)
    client = Client(base)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    url = f"/api/sessions/{sid}/segment"
    box = [8, 8, 30, 30]
    stroke = {"stroke": [[40, 45], [50, 45], [58, 46]], "label": 1, "radius": 2}
    result = client.post_json(url, {"boxes": [box], "clicks": [[stroke]]}).json()
    assert result["objects"][0]["clicks"] == 1  # one prompt: the stroke (8 points along it)
    segs = app.state.store.get(sid).segs
    assert segs[45, 40] == 1 and segs[45, 50] == 1  # the stand-in paints disks at the points
    for bad, message in (
        ({"stroke": [], "label": 1, "radius": 2}, "needs 1.."),
        ({"stroke": [[1, 1]], "label": 5, "radius": 2}, "label must be 1 or 0"),
        ({"stroke": [[1, 1]], "label": 1, "radius": 500}, "radius"),
        ({"stroke": [[1, 99]], "label": 1, "radius": 2}, "outside the image"),
    ):
        reply = client.post_json(url, {"boxes": [box], "clicks": [[bad]]})
        assert reply.status == 400 and message in reply.json()["error"], bad


def test_import_a_mask_as_objects_to_refine(serve, tmp_path):
    base, app = serve(UIConfig(model="test_tiny"), ClickBackend)
    client = Client(base)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    labels = np.zeros((64, 64), np.uint8)
    labels[10:20, 12:30] = 1
    labels[40:50, 40:44] = 3
    imported = client.post(f"/api/sessions/{sid}/import?name=mask.png", png_bytes(labels)).json()
    assert imported["labels"] == [1, 3]
    assert imported["boxes"] == [[12, 10, 30, 20], [40, 40, 44, 50]]
    url = f"/api/sessions/{sid}/segment"
    shown = client.post_json(url, {"boxes": imported["boxes"]}).json()
    segs = app.state.store.get(sid).segs
    np.testing.assert_array_equal(segs > 0, labels > 0)  # shown as imported
    assert [o["voxels"] for o in shown["objects"]] == [180, 40]
    refined = client.post_json(
        url, {"boxes": imported["boxes"], "clicks": [[[50, 30, 1]], []]}
    ).json()  # a click refines object 1 (the stand-in adds a disk there)
    assert refined["objects"][0]["clicks"] == 1 and app.state.store.get(sid).segs[30, 50] == 1
    wrong = client.post(f"/api/sessions/{sid}/import?name=m.png", png_bytes(labels[:32]))
    assert wrong.status == 400 and "this image is (64, 64)" in wrong.json()["error"]
    empty = client.post(f"/api/sessions/{sid}/import?name=m.png", png_bytes(labels * 0))
    assert empty.status == 400 and "no labels" in empty.json()["error"]
    npz = tmp_path / "m.npz"
    np.savez(npz, segs=labels)
    again = client.post(f"/api/sessions/{sid}/import?name=m.npz", npz.read_bytes()).json()
    assert again["labels"] == [1, 3]


def test_dicom_series_downloads_as_dicom_seg(serve, shared_dir, tmp_path):
    hd = pytest.importorskip("highdicom")
    series = shared_dir / "data" / "formats" / "dicom" / "ct_series"
    if not series.is_dir():
        pytest.skip("shared DICOM files missing")
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(series.glob("ct_*.dcm")):
            zf.write(file, file.name)
    base, _ = serve(UIConfig(), BoxBackend)
    client = Client(base)
    info = client.post("/api/upload?name=series.zip", archive.read_bytes()).json()
    assert "dicom-seg" in info["formats"]
    sid = info["session"]
    client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [[200, 200, 0, 320, 300, 1]]})
    reply = client.get(f"/api/sessions/{sid}/download/dicom-seg")
    assert reply.status == 200
    (tmp_path / "seg.dcm").write_bytes(reply.body)
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert seg.number_of_segments == 1
    picture = np.zeros((8, 8, 3), np.uint8)
    picture[2:6, 2:6] = 200
    png = client.post("/api/upload?name=a.png", png_bytes(picture)).json()
    assert png["formats"] == ["nifti", "png", "npz"]  # no DICOM source: no SEG


def test_switching_the_model_encodes_the_open_images_again(serve):
    base, app = serve(UIConfig(), BoxBackend)  # the stand-in answers for every model name
    client = Client(base)
    config = client.get("/api/config").json()
    names = [m["name"] for m in config["models"]]
    assert names[0] == "litemedsam" and "umedsam_effvit_b0" in names
    image = np.zeros((32, 32, 3), np.uint8)
    image[4:28, 4:28] = 200
    sid = client.post("/api/upload?name=sq.png", png_bytes(image)).json()["session"]
    assert wait_until_encoded(client, sid)["ready"]
    client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [[4, 4, 28, 28]]})
    switched = client.post_json("/api/model", {"model": "umedsam_effvit_b0"}).json()
    assert switched["model"] == "umedsam_effvit_b0" and switched["prompts"] == ["box"]
    assert client.get("/api/config").json()["model"] == "umedsam_effvit_b0"
    assert wait_until_encoded(client, sid)["ready"]  # encoded again for the new model
    assert app.state.store.get(sid)._objects == {}  # nothing computed by the old model kept
    bad = client.post_json("/api/model", {"model": "../../etc"})
    assert bad.status == 400 and "unknown model" in bad.json()["error"]


class SlowBackend(BoxBackend):
    """The box stand-in, 0.1 s per encoded slice; records how many decoder calls preceded each."""

    def __init__(self) -> None:
        self.decodes = 0

    def encode(self, images: np.ndarray) -> np.ndarray:
        import time

        time.sleep(0.1)
        return super().encode(images)

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.decodes += 1
        return super().decode(embedding, boxes)


def test_status_waits_for_progress_and_ready_means_a_warm_decoder(serve, make_sphere):
    import time

    backend = SlowBackend()
    base, app = serve(UIConfig(), lambda: backend)
    client = Client(base)
    vol, _ = make_sphere()  # 12 slices: about 1.2 s of encoding
    buffer = io.BytesIO()
    np.savez(buffer, imgs=vol, boxes=np.array([[20, 20, 4, 44, 44, 8]]))
    sid = client.post("/api/upload?name=v.npz", buffer.getvalue()).json()["session"]
    seen, answers = 0, []
    while True:
        start = time.monotonic()
        status = client.get(f"/api/sessions/{sid}/status?after={seen}").json()
        answers.append(time.monotonic() - start)
        assert status["error"] is None
        if status["ready"]:
            break
        assert status["embedded"] > seen  # each answer brings news, not a timeout
        seen = status["embedded"]
    assert status["embedded"] == status["total"] == len(vol)
    assert backend.decodes >= 1  # the box decoder ran once before the volume counted as ready
    assert max(answers) < 1.5  # progress arrives slice by slice, well before the 2 s wait ends
    start = time.monotonic()  # a ready session answers at once, whatever ``after`` says
    assert client.get(f"/api/sessions/{sid}/status?after={len(vol)}").json()["ready"]
    assert time.monotonic() - start < 1.9


def test_reference_dsc_scores_each_object_against_the_label_it_overlaps() -> None:
    from umedsam.ui.objects import reference_dsc

    gts = np.zeros((20, 20), np.uint8)
    gts[2:8, 2:8] = 1
    gts[12:18, 12:18] = 2
    segs = np.zeros_like(gts)
    segs[12:18, 12:18] = 1  # the user's first object is the reference's label 2
    segs[2:8, 2:7] = 2
    assert reference_dsc(segs, gts, 3) == [1.0, round(2 * 30 / (30 + 36), 4), 0.0]


def test_example_dsc_is_per_object_against_the_overlapped_label(serve) -> None:
    """On a two-label example, one box around reference label 2 scores against label 2."""
    if "3DBox_MR_HippocampusMSD_003" not in example_cases():
        pytest.skip("bundled examples not installed")
    base, app = serve(UIConfig(model="test_tiny"), BoxBackend)
    client = Client(base)
    sid = client.post("/api/examples/3DBox_MR_HippocampusMSD_003").json()["session"]
    gts = np.asarray(app.state.store.get(sid).image.ground_truth)
    zz, yy, xx = np.nonzero(gts == 2)
    box = [int(xx.min()), int(yy.min()), int(zz.min()), int(xx.max()), int(yy.max()), int(zz.max())]
    reply = client.post_json(f"/api/sessions/{sid}/segment", {"boxes": [box]}).json()
    (row,) = reply["objects"]
    from umedsam.evaluation.metrics import dice

    segs = app.state.store.get(sid).segs
    assert row["dsc"] == reply["dsc"] == round(float(dice(segs == 1, gts == 2)), 4) > 0.1
