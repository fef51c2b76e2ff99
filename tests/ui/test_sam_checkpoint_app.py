"""The web app on a user's SAM-family checkpoint (``umedsam ui --checkpoint FILE``): boxes,
clicks and a 3D box on the tiny ViT test model in SAM's and MedSAM's frames, through a real
server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from umedsam.models.registry import build_model  # noqa: E402
from umedsam.ui.app import UIConfig  # noqa: E402

from .conftest import Client  # noqa: E402
from .test_app import png_bytes, wait_until_encoded  # noqa: E402


@pytest.mark.parametrize("model", ["test_tiny_sam", "test_tiny_medsam"])
def test_boxes_clicks_and_a_volume_with_a_sam_checkpoint(model, serve, make_sphere, tmp_path: Path):
    torch.manual_seed(0)
    network = build_model("test_tiny_sam")
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ckpt = tmp_path / "tiny_sam.pth"
    torch.save(network.state_dict(), ckpt)
    config = UIConfig(model=model, checkpoint=str(ckpt), engine="torch", threads=1)
    base, app = serve(config)
    client = Client(base)
    takes_clicks = "click" in client.get("/api/config").json()["prompts"]
    assert takes_clicks == (model == "test_tiny_sam")  # MedSAM was trained with boxes only
    image = np.zeros((70, 90, 3), np.uint8)
    cv2.circle(image, (45, 35), 16, (200, 200, 200), -1)
    sid = client.post("/api/upload?name=disk.png", png_bytes(image)).json()["session"]
    assert wait_until_encoded(client, sid)["ready"]
    url = f"/api/sessions/{sid}/segment"
    box = [26, 16, 64, 54]
    first = client.post_json(url, {"boxes": [box]})
    assert first.status == 200, first.body
    clicked = client.post_json(url, {"boxes": [box], "clicks": [[[45, 35, 1]]]})
    if takes_clicks:
        assert clicked.json()["objects"][0]["clicks"] == 1
    else:
        assert clicked.status == 400 and "not trained to take clicks" in clicked.json()["error"]
    assert client.get(f"/api/sessions/{sid}/download/png").status in (200, 400)
    session = app.state.store.get(sid)
    assert session.segs.shape == (70, 90)

    import nibabel as nib

    vol, _ = make_sphere(8, 40, 40)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol.transpose(2, 1, 0).astype(np.float32), np.eye(4)), path)
    sid3 = client.post("/api/upload?name=vol.nii.gz", path.read_bytes()).json()["session"]
    assert wait_until_encoded(client, sid3)["embedded"] == 8
    reply = client.post_json(f"/api/sessions/{sid3}/segment", {"boxes": [[8, 8, 2, 32, 32, 5]]})
    assert reply.status == 200, reply.body
    assert len(app.state.store.get(sid3)._embeddings) == 8  # each slice encoded once
