"""`instructx2x serve`'s HTTP API in-process (starlette's TestClient) on a tiny real pipeline:
bad uploads, limits, the parse preview, the queue, variations and the download."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers.demo_editor import write_pseudo_masks
from helpers.tiny_pipeline import build_tiny_pipeline

SIZE = 32


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from starlette.testclient import TestClient

    from instructx2x.inference.editor import Editor
    from instructx2x.inference.serve import Limits, Service, create_app, load_gallery

    root = tmp_path_factory.mktemp("serve_api")
    model = build_tiny_pipeline(root / "model", words=("add", "a", "small", "moderate", "large", "left", "right",
                                                        "bilateral", "pleural", "effusion"))
    masks = write_pseudo_masks(root / "masks.npz", SIZE)
    rng = np.random.default_rng(3)
    (root / "gallery").mkdir()
    Image.fromarray((rng.random((SIZE, SIZE)) * 255).astype(np.uint8)).save(root / "gallery" / "g0.png")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `serve --threads 1`: the worker thread does not compete with the test's
    editor = Editor(model, pseudo_masks=masks)
    service = Service(editor, load_gallery(root / "gallery"), Limits(max_bytes=200_000, max_pixels=128 * 128), max_pending=2)
    with TestClient(create_app(service)) as c:
        c.image = (rng.random((SIZE, SIZE)) * 255).astype(np.uint8)
        c.service = service
        yield c
    torch.set_num_threads(threads)


def _post(client, path="/api/edit", image=None, settings=None, mask=None, raw_settings=None):
    files = {}
    if image is not None:
        files["image"] = ("in.png", image if isinstance(image, bytes) else _png(image), "image/png")
    if mask is not None:
        files["user_mask"] = ("m.png", _png(mask), "image/png")
    data = {"settings": raw_settings if raw_settings is not None else json.dumps(settings or {})}
    return client.post(path, files=files, data=data)


def _error(resp, status, *fragments):
    assert resp.status_code == status, resp.text
    msg = resp.json()["error"]
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


def test_edit_answers_record_and_base64_images(client):
    resp = _post(client, image=client.image, settings={"instruction": "Add a moderate left pleural effusion", "steps": 2,
                                                       "seed": 4})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body["images"]) >= {"edited", "guidance", "mask", "overlay", "difference"}
    rec = body["record"]
    assert rec["settings"]["seed"] == 4 and rec["settings"]["steps"] == 2 and rec["mask_source"] == "pseudo"
    assert rec["model"]["sha256"] == client.service.editor.model_sha256 and len(rec["model"]["sha256"]) == 64
    edited = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"]["edited"]))))
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["images"]["mask"])))) > 127
    assert mask.any() and not mask.all()
    assert np.array_equal(edited[~mask], client.image[~mask])  # outside the mask: the input itself


def test_bad_uploads_get_clear_errors(client):
    ok = {"instruction": "Add a small left pleural effusion", "steps": 1}
    _error(_post(client, image=b"hello, not an image", settings=ok), 400, "image upload in.png: cannot decode image (not an image file")
    _error(_post(client, settings=ok), 400, "'image' file")
    _error(_post(client, image=client.image, raw_settings="{not json"), 400, "settings is not valid JSON")
    _error(_post(client, image=client.image, settings={"instruction": "x", "path": "/etc/passwd"}), 400,
           "unknown key(s) ['path']")
    _error(_post(client, image=client.image, settings={"instruction": "x", "steps": "10"}), 400, "steps must be int")
    _error(_post(client, image=client.image[:, :30], settings=ok), 400, "divisible by 4")
    big = np.tile(client.image, (5, 5))  # 160 x 160 = 25,600 pixels > the 16,384 limit
    _error(_post(client, image=big, settings=ok), 400, "the limit is 16,384")
    noise = np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)  # ~90 kB PNG x3 > 200 kB
    resp = client.post("/api/edit", files={"image": ("n.png", _png(noise) * 3, "image/png")}, data={"settings": "{}"})
    _error(resp, 413, "the limit is 200,000")
    wide = np.zeros((SIZE, 2 * SIZE), np.uint8)
    wide[:, :4] = 255
    _error(_post(client, image=client.image, settings=ok, mask=wide), 400, "another aspect ratio")
    _error(_post(client, image=client.image, settings=ok, mask=np.zeros((SIZE, SIZE), np.uint8)), 400,
           "user mask m.png is empty", "equal the input")
    _error(client.post("/api/edit", content=b"{}", headers={"content-type": "application/json"}), 400, "multipart")


def test_decode_and_parse_preview(client):
    resp = client.post("/api/decode", files={"image": ("in.png", _png(client.image), "image/png")})
    assert resp.status_code == 200 and resp.json()["width"] == SIZE
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(resp.json()["png"])))), client.image)
    prev = client.get("/api/parse", params={"instruction": "Add a moderate left pleural effusion"}).json()
    assert prev["warning"] is None
    assert prev["operations"] == [{"op": "add", "finding": "pleural effusion", "category": "Pleural Effusion",
                                   "side": "left", "zone": None, "severity": "moderate", "from_level": None}]
    assert "whole image will be edited" in client.get("/api/parse", params={"instruction": "Add a tumour"}).json()["warning"]


def test_gallery_is_chosen_at_start_up(client):
    info = client.get("/api/info").json()
    assert [g["name"] for g in info["gallery"]] == ["g0.png"]
    assert client.get("/api/gallery/0.png").headers["content-type"] == "image/png"
    assert client.get("/api/gallery/1.png").status_code == 404
    assert client.get("/api/gallery/..%2F..%2Fetc%2Fpasswd").status_code == 404  # no route reads a path


def test_edits_are_queued_one_at_a_time(client):
    s = {"instruction": "Add a moderate left pleural effusion", "steps": 12}
    ids = [_post(client, "/api/jobs", client.image, s).json()["job"] for _ in range(2)]
    statuses = []
    deadline = time.time() + 300
    while time.time() < deadline:
        jobs = [client.get(f"/api/jobs/{i}").json() for i in ids]
        statuses.append([j["status"] for j in jobs])
        assert sum(j["status"] == "running" for j in jobs) <= 1
        if jobs[0]["status"] == "running" and jobs[1]["status"] == "queued":
            assert jobs[1]["position"] == 1
            assert client.get("/api/info").status_code == 200  # the server answers while an edit runs
        if all(j["status"] in ("done", "failed") for j in jobs):
            break
        time.sleep(0.05)
    assert [j for j in statuses[-1]] == ["done", "done"], statuses[-5:]
    # one at a time, in submission order: the second started only after the first had ended
    # (timestamps from the worker, so this holds however fast or loaded the machine is)
    assert jobs[0]["started_at"] <= jobs[0]["ended_at"] <= jobs[1]["started_at"] <= jobs[1]["ended_at"]
    done = client.get(f"/api/jobs/{ids[0]}").json()
    assert done["progress"] == {"done": 12, "total": 12}
    z = zipfile.ZipFile(io.BytesIO(client.get(done["download"]).content))
    assert {"input.png", "edited.png", "guidance.png", "mask.png", "overlay.png", "difference.png", "record.json"} <= set(z.namelist())
    assert json.loads(z.read("record.json"))["settings"]["steps"] == 12


def test_variations_grid(client):
    resp = _post(client, "/api/variations", client.image, {"instruction": "Add a moderate left pleural effusion", "steps": 1})
    assert resp.status_code == 202, resp.text
    job = resp.json()["job"]
    while (st := client.get(f"/api/jobs/{job}").json())["status"] in ("queued", "running"):
        time.sleep(0.05)
    assert st["status"] == "done", st
    rec = st["result"]["record"]
    assert [v["instruction"] for v in rec["variants"]][:3] == ["Add a small left pleural effusion",
                                                               "Add a small right pleural effusion",
                                                               "Add a small bilateral pleural effusion"]
    assert len(rec["variants"]) == 9 and rec["settings"]["seed"] == 0
    grid = Image.open(io.BytesIO(base64.b64decode(st["result"]["images"]["grid"])))
    assert grid.width > 3 * SIZE and grid.height > 3 * SIZE
    _error(_post(client, "/api/variations", client.image, {"instruction": "Add a tumour"}), 400, "variations need a parsed")
