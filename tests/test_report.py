"""The HTML report: built from small real inputs, then opened in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from instructx2x.evaluation.metrics import PAPER_TABLE2
from instructx2x.evaluation.report import build_report, table2_html
from instructx2x.core.ledger import Ledger

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]


def _png(path, seed, rgb=False):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (32, 32, 3) if rgb else (32, 32), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def _row(v):
    keys = ("patho_auroc", "race_auroc", "age_pearson", "cmig", "kl", "fid")
    return {**dict(zip(keys, v)), "patho_auroc_per_finding": {"Atelectasis": 0.7, "Cardiomegaly": None},
            "intervals": {k: [x - 0.05, x + 0.05] for k, x in zip(keys, v)} | {"patho_auroc/Atelectasis": [0.6, 0.8]}}


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "results"
    (d / "inference").mkdir(parents=True)
    metrics = {"rows": {"real": _row([0.8, 0.9, 0.7, 0.78, 0.0, 0.0]), "input": _row([0.6, 0.88, 0.69, 0.7, 0.3, 2.0]),
                        "wo_rse": _row([0.7, 0.8, 0.6, 0.7, 0.2, 1.5]), "rse": _row([0.72, 0.85, 0.65, 0.72, 0.1, 1.2])},
               "n_pairs": 4, "backend": "trained", "edit_success": {"rse": {"n_pairs": 3}, "wo_rse": {"n_pairs": 3}},
               "ablation_directions": [{"check": "KL: rse < wo_rse", "left": 0.1, "right": 0.2, "holds": True}],
               "evaluator": {"n_train_images": 40, "n_heldout_images": 8, "heldout_source": "val split",
                             "heldout": {"patho_auroc": 0.71, "race_accuracy": 0.9, "patho_auroc_per_finding": {"Edema": 0.6}}}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    recs = []
    for i in range(3):
        pid = f"5000000{i}_4000000{i}"
        inp, tgt = _png(d / f"in{i}.png", i), _png(d / f"tg{i}.png", 10 + i)
        for mode in ("rse", "wo_rse"):
            recs.append({"pair_id": pid, "mode": mode, "status": "ok", "input_path": inp, "target_path": tgt,
                         "edited_path": _png(d / "inference" / f"{pid}_{mode}.png", 20 + i),
                         "guidance_png_path": _png(d / "inference" / f"{pid}_{mode}_g.png", 30 + i),
                         "overlay_path": _png(d / "inference" / f"{pid}_{mode}_o.png", 40 + i, rgb=True),
                         "instruction": "Add a small left pleural effusion", "mask_source": "pseudo", "mask_detail": "Pleural Effusion"})
    pd.DataFrame(recs).to_parquet(d / "records.parquet")
    pd.DataFrame({"split": ["train", "test"], "samples": [10, 2], "Add": [3, 1]}).to_csv(d / "table1.csv", index=False)
    pd.DataFrame({"step": [1, 2, 3], "train_loss": [1.0, 0.5, 0.3], "val_loss": [None, 0.6, None]}).to_csv(d / "loss.csv", index=False)
    led = Ledger("pairs")
    led.count("chronological", 10, 8)
    led.write(d / "pairs.tsv", d / "pairs.counts.tsv")
    (d / "audit.json").write_text(json.dumps({"ok": True, "checked": 12, "problems": []}))
    (d / "git.json").write_text(json.dumps({"commit": "0" * 40, "dirty": False}))
    (d / "versions.json").write_text(json.dumps({"python": "3.11.9", "packages": {"torch": "2.14.1"}}))
    (d / "config.resolved.yaml").write_text("seed: 1234\n")
    return {"dir": d, "kw": dict(metrics_path=d / "metrics.json", records_path=d / "records.parquet", table1_csv=d / "table1.csv",
                                 loss_csv=d / "loss.csv", montage_png=_png(d / "montage.png", 50), masks_png=_png(d / "masks.png", 51),
                                 ledger_counts=[d / "pairs.counts.tsv"], audit_path=d / "audit.json",
                                 variations_png=_png(d / "variations.png", 52))}


def test_table2_shows_ours_with_intervals_and_paper_labelled():
    m = {"rows": {"real": _row([0.8, 0.9, 0.7, 0.78, 0.0, 0.0]), "input": None}, "n_pairs": 3, "backend": "xrv"}
    h = table2_html(m)
    assert "80.00 [75.0, 85.0]" in h  # percent with interval
    assert "not run" in h  # a row absent from metrics.json
    assert "published, for reference" in h and str(PAPER_TABLE2["rows"]["rse"]["cmig"]) in h
    assert "cannot be recomputed" in h and "nats" in h


def test_report_self_contained_and_missing_inputs_say_so(inputs, tmp_path):
    out = tmp_path / "out" / "report.html"
    build_report(out, index_html=tmp_path / "out" / "index.html", **inputs["kw"])
    text = out.read_text()
    assert (tmp_path / "out" / "index.html").read_text() == text
    assert "not available" not in text
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(srcs) == 4 + 3 * 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    partial = tmp_path / "partial.html"
    build_report(partial, metrics_path=inputs["kw"]["metrics_path"])
    t = partial.read_text()
    for what in ("Table 1", "registration montage", "pseudo masks", "training loss curve", "gallery", "provenance audit",
                 "ledger counts", "variations figure"):
        assert f"{what}" in t and "not available" in t
    assert t.count("not available") == 8  # the metrics file gives Table 2 and edit success


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


WRAPPER = """<!doctype html><html><body><iframe id="r" src="{src}" width="1200" height="800"></iframe>
<pre id="result">pending</pre><script>
document.getElementById('r').addEventListener('load', function () {{
  var d = this.contentDocument, imgs = Array.from(d.images);
  var tables = Array.from(d.querySelectorAll('table')).map(function (t) {{ return t.rows.length; }});
  document.getElementById('result').textContent = JSON.stringify({{
    images: imgs.length, loaded: imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length,
    tables: tables, table2_rows: d.querySelectorAll('#table2 tbody tr').length,
    table2_height: d.getElementById('table2').getBoundingClientRect().height }});
}});
</script></body></html>"""


def open_in_chromium(html_path, tmp_path) -> dict:
    """Load the report in headless Chromium; a wrapper page reads the loaded DOM and prints a summary."""
    exe = _chromium()
    if exe is None:
        pytest.fail("chromium not installed: run `make browser` (apt-get install chromium chromium-driver)")
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(WRAPPER.format(src=html_path.resolve().as_uri()))
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
           "--virtual-time-budget=10000", "--dump-dom", wrapper.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no DOM from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"'))


def test_report_renders_in_headless_chromium(inputs, tmp_path):
    out = tmp_path / "report" / "report.html"
    build_report(out, **inputs["kw"])
    res = open_in_chromium(out, tmp_path)
    assert res["images"] == 22 and res["loaded"] == res["images"]
    assert res["table2_rows"] == 7 and res["table2_height"] > 50
    assert len(res["tables"]) >= 5 and all(n >= 2 for n in res["tables"])


def test_chromium_check_detects_a_broken_image(inputs, tmp_path):
    out = tmp_path / "broken" / "report.html"
    build_report(out, **inputs["kw"])
    text = out.read_text().replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    out.write_text(text)
    res = open_in_chromium(out, tmp_path)
    assert res["loaded"] == res["images"] - 1


@pytest.mark.slow
def test_variations_figure_with_tiny_pipeline(tmp_path):
    """Figure 4: severity/laterality variants of one input on the tiny offline editor."""
    from instructx2x.evaluation.variations import VARIANTS, variations_figure
    from instructx2x.masks import save_pseudo_masks
    from helpers.tiny_pipeline import build_tiny_pipeline

    size = 32
    model = build_tiny_pipeline(tmp_path / "model", words=("add", "a", "small", "moderate", "large", "left", "right",
                                                           "bilateral", "pleural", "effusion"))
    masks = {}
    for cat in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion", "Pneumonia", "Pneumothorax"):
        m = np.zeros((size, size), np.uint8)
        m[size // 2:, :] = 1
        masks[cat] = m
    save_pseudo_masks(masks, size, tmp_path / "masks.npz", tmp_path / "mpng", tmp_path / "mfig.png")
    inp = _png(tmp_path / "in.png", 3)
    pd.DataFrame([{"pair_id": "b", "mode": "rse", "status": "ok", "input_path": _png(tmp_path / "other.png", 4)},
                  {"pair_id": "a", "mode": "rse", "status": "ok", "input_path": inp},
                  {"pair_id": "0", "mode": "rse", "status": "failed", "input_path": "missing.png"}]).to_parquet(tmp_path / "r.parquet")
    info = variations_figure(tmp_path / "r.parquet", model, tmp_path / "masks.npz", tmp_path / "var.png",
                             rse_cfg={"steps": 2}, masks_cfg={"restrict_laterality": True}, seed=1)
    assert info["pair_id"] == "a" and [v["instruction"] for v in info["variants"]] == [t for _, t in VARIANTS]
    assert all(v["mask_source"] == "pseudo" for v in info["variants"])
    with Image.open(tmp_path / "var.png") as im:
        assert im.size[0] > 200 and im.size[1] > 500


def test_gallery_wo_rse_tile_is_the_change_and_captions_read_once(inputs, tmp_path):
    from instructx2x.evaluation.report import _mask_caption, gallery_html

    recs = pd.read_parquet(inputs["dir"] / "records.parquet")
    text = gallery_html(recs, 1)
    assert "wo-RSE change |edit − input|" in text and "guidance map" in text
    assert "wo_rse guidance map" not in text  # the all-black wo-RSE guidance map is not shown
    assert _mask_caption("pseudo", "pseudo mask(s) of Pleural Effusion") == "pseudo mask(s) of Pleural Effusion"
    assert _mask_caption("user", "drawn mask") == "user: drawn mask"


def test_edit_success_and_interval_reasons_and_provenance_in_report(inputs, tmp_path):
    d = inputs["dir"]
    m = json.loads((d / "metrics.json").read_text())
    m["edit_success"] = {mode: {"region": "r", "n_pairs": 3, "median_ratio": 0.8, "median_ratio_interval": [0.7, 0.9],
                                "share_closer": 2 / 3, "share_closer_interval": [0.3, 1.0], "n_operations": 4,
                                "share_moved_as_instructed": 0.75, "share_moved_interval": [0.5, 1.0]}
                         for mode in ("rse", "wo_rse")}
    m["rows"]["rse"]["interval_reasons"] = {"race_auroc": "race groups among the 3 pairs: {0: 3}"}
    (d / "metrics.json").write_text(json.dumps(m))
    (d / "git.json").write_text(json.dumps({"commit": "abc1234", "dirty": False}))
    (d / "versions.json").write_text(json.dumps({"python": "3.11", "packages": {"torch": "2.14.1"}}))
    (d / "config.resolved.yaml").write_text("seed: 1234\n")
    out = tmp_path / "r.html"
    build_report(out, **inputs["kw"])
    text = out.read_text()
    assert "Edit success" in text and "0.800 [0.700, 0.900]" in text and "75% [50, 100]" in text
    assert "race groups among the 3 pairs" in text
    assert "abc1234" in text and "2.14.1" in text and "seed: 1234" in text


@pytest.mark.slow
def test_report_of_the_small_demo_run_renders_in_chromium(small_run, tmp_path):
    """The report the DAG itself produced (small demo config), not one built from test tiles."""
    html_path = small_run.pristine / "results" / "report" / "index.html"
    assert html_path.exists()
    res = open_in_chromium(html_path, tmp_path)
    assert res["images"] >= 8 and res["loaded"] == res["images"]
    assert res["table2_rows"] == 7 and res["table2_height"] > 50
    text = html_path.read_text()
    assert "pseudo pseudo" not in text and "Edit success" in text and "Resolved configuration" in text
