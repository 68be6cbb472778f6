"""`instructx2x serve` end to end: the server process on a demo-shaped model, driven in real headless
Chromium (Selenium + Debian's chromium/chromium-driver), and `POST /api/edit` against `instructx2x edit`.

Set INSTRUCTX2X_SCREENSHOT=path to save a screenshot of the page after the edit (docs/img/serve.png).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.demo_editor import build_demo_editor

REPO = Path(__file__).resolve().parents[1]
SIZE = 64  # demo architecture (factor 16); 64 px keeps the test quick
STEPS = 3
INSTRUCTION = "Add a moderate left pleural effusion"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_demo")
    return {"root": root, **build_demo_editor(root, size=SIZE)}


@pytest.fixture(scope="module")
def server(demo):
    cmd = [sys.executable, "-m", "instructx2x.cli", "serve", "--model", str(demo["model"]), "--masks", str(demo["masks"]),
           "--gallery", str(demo["gallery"]), "--port", "0", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    url, lines, deadline = None, [], time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "open http://" in line:
            url = line.rsplit("open ", 1)[1].strip()
            break
    assert url, "server did not start:\n" + "".join(lines)
    assert url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, driver_exe = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(exe).exists() and Path(driver_exe).exists()):
        pytest.fail("chromium / chromedriver not installed: run `make browser` (apt-get install chromium chromium-driver)")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=driver_exe), options=opts)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _wait(fn, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _natural_width(driver, element_id):
    return driver.execute_script(f"const i = document.getElementById('{element_id}'); return i.complete ? i.naturalWidth : 0;")


def _set(driver, element_id, value):
    el = driver.find_element("id", element_id)
    el.clear()
    el.send_keys(str(value))


def test_page_edits_an_upload_in_headless_chromium(server, browser, demo):
    from selenium.webdriver.common.action_chains import ActionChains

    d = browser
    d.get(server)
    _wait(lambda: d.execute_script("return document.querySelectorAll('#gallery img').length") == 3, what="gallery")
    # a bad upload is refused with a clear message on the page
    bad = demo["root"] / "notes.png"
    bad.write_text("not an image")
    d.find_element("id", "file").send_keys(str(bad))
    _wait(lambda: "not an image file" in d.find_element("id", "input-error").text, what="upload error")
    # upload a demo input, type the instruction, see the parsed operations
    upload = demo["gallery"] / "demo_input_1.png"
    d.find_element("id", "file").send_keys(str(upload))
    _wait(lambda: d.execute_script("return state.file !== null && state.width === %d" % SIZE), what="decoded upload")
    d.find_element("id", "instruction").send_keys("Add a tumour")
    _wait(lambda: "whole image will be edited" in d.find_element("id", "parse-warning").text, what="unknown-finding warning")
    _set(d, "instruction", INSTRUCTION)
    _wait(lambda: [c.text for c in d.find_elements("css selector", "#preview tbody td")] ==
          ["add", "pleural effusion", "left", "-", "moderate"], what="parsed preview")
    assert not d.find_element("id", "parse-warning").is_displayed()
    _set(d, "steps", STEPS)
    _set(d, "seed", 11)
    d.find_element("id", "run").click()
    _wait(lambda: all(_natural_width(d, f"out-{k}") == SIZE for k in ("edited", "guidance", "mask")), what="outputs")
    assert "pseudo" in d.find_element("id", "mask-detail").text
    if os.environ.get("INSTRUCTX2X_SCREENSHOT"):
        d.save_screenshot(os.environ["INSTRUCTX2X_SCREENSHOT"])
    # download: the zip's record matches the settings; outside the mask the edit is the input
    d.find_element("id", "download").click()
    zpath = _wait(lambda: next((p for p in d.downloads.glob("*.zip")), None), 60, "download")
    time.sleep(0.5)
    with zipfile.ZipFile(zpath) as z:
        record = json.loads(z.read("record.json"))
        edited = np.asarray(Image.open(io.BytesIO(z.read("edited.png"))))
        mask = np.asarray(Image.open(io.BytesIO(z.read("mask.png")))) > 127
    defaults = json.loads(d.execute_script("return JSON.stringify(settings())"))
    assert record["settings"] == {**defaults, "instruction": INSTRUCTION, "seed": 11, "steps": STEPS, "t_rel": 800, "rse": True}
    assert record["mask_source"] == "pseudo" and record["categories"] == ["Pleural Effusion"]
    original = np.asarray(Image.open(upload))
    assert mask.any() and not mask.all()
    assert np.array_equal(edited[~mask], original[~mask])
    # a mask drawn with the brush replaces the pseudo mask
    ActionChains(d).move_to_element_with_offset(d.find_element("id", "draw"), -150, -150).click_and_hold() \
        .move_by_offset(60, 0).move_by_offset(0, 60).release().perform()
    assert "user mask drawn" in d.find_element("id", "mask-state").text
    d.find_element("id", "run").click()
    _wait(lambda: '"mask_source": "user"' in d.find_element("id", "record").get_attribute("textContent"), what="second edit")
    assert "user" in d.find_element("id", "mask-detail").text
    record = json.loads(d.find_element("id", "record").get_attribute("textContent"))
    assert record["edited_fraction"] < 0.5 and record["settings"]["seed"] == 11


def test_api_edit_equals_cli_edit_byte_for_byte(server, demo, tmp_path):
    import urllib.request

    image = demo["gallery"] / "demo_input_0.png"
    settings = {"instruction": INSTRUCTION, "seed": 5, "steps": STEPS, "tau": 0.2, "rse": True}
    boundary = "----instructx2x-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\n\r\n{json.dumps(settings)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"in.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server + "api/edit", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        api = json.loads(resp.read())
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "instructx2x.cli", "edit", "--model", str(demo["model"]), "--masks",
                           str(demo["masks"]), "--image", str(image), "--instruction", INSTRUCTION, "--seed", "5",
                           "--steps", str(STEPS), "--tau", "0.2", "--out", str(out)],
                          capture_output=True, text=True, env={**_env(), "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("edited", "guidance", "mask", "overlay", "difference"):
        assert base64.b64decode(api["images"][name]) == (out / f"{name}.png").read_bytes(), name
    cli = json.loads((out / "record.json").read_text())
    drop = ("timing", "paths")
    assert {k: v for k, v in api["record"].items() if k not in drop} == {k: v for k, v in cli.items() if k not in drop}
