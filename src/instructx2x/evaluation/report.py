"""The HTML report: one self-contained file (every image embedded as a data URI).

Sections: dataset funnel (ledger counts), Table 1, registration montage, pseudo masks, training
loss curve, Table 2 (ours with 95% intervals, the paper's beside it, labelled, with the caution
about its CMIG column), evaluator accuracies, a gallery of edits (input, RSE edit, RSE guidance
overlay, wo-RSE edit, wo-RSE guidance, target) and the provenance audit. A section whose input is
absent says "not available" instead of failing, so the report can be built from a partial run;
the Snakemake rule makes every input explicit.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from pathlib import Path

import pandas as pd

from instructx2x.evaluation.metrics import PAPER_TABLE2
from instructx2x.core.io import write_text
from instructx2x.core.paths import read_parquet

log = logging.getLogger(__name__)
ROW_LABELS = {"real": "Real current images (ceiling)", "input": "Unedited input (floor)",
              "wo_rse": "InstructX2X wo RSE (ours)", "rse": "InstructX2X with RSE (ours)"}
COLUMNS = (("patho_auroc", "Patho AUROC ↑"), ("race_auroc", "Race AUROC ↑"), ("age_pearson", "Age Pearson r ↑"),
           ("cmig", "CMIG ↑"), ("kl", "KL (nats) ↓"), ("fid", "FID ↓"))
PCT = {"patho_auroc", "race_auroc", "age_pearson", "cmig"}

CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}.paper td{color:#666;font-style:italic}.na{color:#a00}
.gallery img{width:150px;height:150px;image-rendering:pixelated}figure{display:inline-block;margin:4px}
figcaption{font-size:11px;max-width:150px}pre.config{font-size:11px;max-height:400px;overflow:auto;background:#f6f6f6;padding:6px}.note{font-size:13px;color:#444;max-width:900px}img.fig{max-width:100%}"""


def _img(path, cls="fig", alt="") -> str:
    data = Path(path).read_bytes()
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def _na(what: str) -> str:
    return f'<p class="na">{html.escape(what)}: not available</p>'


def _table(df: pd.DataFrame, cls="") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(key, v, ci=None) -> str:
    if v is None:
        return "n/a"
    s = f"{100 * v:.2f}" if key in PCT else f"{v:.3f}"
    if ci:
        lo, hi = ci
        s += f" [{100 * lo:.1f}, {100 * hi:.1f}]" if key in PCT else f" [{lo:.3f}, {hi:.3f}]"
    return s


def table2_html(metrics: dict) -> str:
    head = '<tr><th class="l">row</th>' + "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS) + "</tr>"
    body = []
    for row, label in ROW_LABELS.items():
        m = (metrics.get("rows") or {}).get(row)
        if m is None:
            body.append(f'<tr><td class="l">{label}</td>' + '<td>not run</td>' * len(COLUMNS) + "</tr>")
            continue
        ci = m.get("intervals") or {}
        body.append(f'<tr><td class="l">{label}</td>' + "".join(f"<td>{_fmt(k, m.get(k), ci.get(k))}</td>" for k, _ in COLUMNS) + "</tr>")
    for row, vals in PAPER_TABLE2["rows"].items():
        label = {"real": "Paper: Real", "wo_rse": "Paper: InstructX2X wo RSE", "rse": "Paper: InstructX2X"}[row]
        body.append(f'<tr class="paper"><td class="l">{label} (published, for reference)</td>'
                    + "".join(f"<td>{'—' if vals[k] is None else vals[k]}</td>" for k, _ in COLUMNS) + "</tr>")
    per = []
    for row in ROW_LABELS:
        m = (metrics.get("rows") or {}).get(row)
        if m:
            ci = m.get("intervals") or {}
            per.append({"row": row, **{f: _fmt("patho_auroc", v, ci.get(f"patho_auroc/{f}")) for f, v in m["patho_auroc_per_finding"].items()}})
    splits = metrics.get("splits") or ["test"]
    by_split = metrics.get("n_pairs_by_split") or {}
    split_text = " + ".join(f"{by_split[s]} {s}" for s in splits if s in by_split) or "/".join(splits)
    note = (f"<p class='note'>Ours: {metrics.get('n_pairs')} evaluated pairs ({html.escape(split_text)}), evaluator backend <b>{html.escape(str(metrics.get('backend')))}</b>; "
            "AUROC/r/CMIG in %, 95% bootstrap intervals over pairs in brackets. CMIG is Eq. 3 computed as written from the five "
            "per-finding AUROCs and (race AUROC, age Pearson r); KL is Eq. 4 in nats. "
            f"{html.escape(PAPER_TABLE2['note'])}</p>")
    comps = _table(pd.DataFrame(per)) if per else ""
    dirs = metrics.get("ablation_directions") or []
    if dirs:
        def ci(x):
            c = x.get("difference_interval")
            return "n/a" if not c else f"[{c[0]:.4f}, {c[1]:.4f}]"
        d = pd.DataFrame([{"paper's direction": x["check"], "left": "n/a" if x["left"] is None else f"{x['left']:.4f}",
                           "right": "n/a" if x["right"] is None else f"{x['right']:.4f}",
                           "left − right [95% paired bootstrap]": ci(x),
                           "holds (point)": {True: "yes", False: "NO", None: "undefined"}[x["holds"]],
                           "interval excludes the other side": {True: "yes", False: "no", None: "n/a"}[x.get("supported")]}
                          for x in dirs])
        comps += "<h3>Ablation directions of the paper, measured on this run</h3>" + _table(d, "directions")
    reasons = [{"row": row, "metric": k, "why no interval": v} for row in ROW_LABELS
               for k, v, in (((metrics.get("rows") or {}).get(row) or {}).get("interval_reasons") or {}).items()]
    if reasons:
        comps += "<h3>Intervals that could not be computed</h3>" + _table(pd.DataFrame(reasons), "reasons")
    return (f'<table id="table2"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>{note}'
            f"<h3>Per-finding AUROC (CMIG components a_i)</h3>{comps}")


def loss_curve_png(metrics_csv) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(metrics_csv)
    x = df["step"] if "step" in df else pd.Series(range(len(df)))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for col in [c for c in df.columns if "loss" in c]:
        ok = df[col].notna()
        ax.plot(x[ok], df[col][ok], "o-" if ok.sum() < 20 else "-", lw=0.8, ms=3, label=col)
    ax.set_xlabel(x.name or "step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


MODE_LABELS = {"rse": "RSE", "wo_rse": "wo-RSE"}


def _mask_caption(source, detail) -> str:
    """``source`` and ``detail`` without repeating a word the detail already starts with."""
    source, detail = str(source or "").strip(), str(detail or "").strip()
    if not detail:
        return source
    if not source or detail.lower().startswith(source.lower()):
        return detail
    return f"{source}: {detail}"


def _difference_png(input_path, edited_path):
    """An ``<img>`` of |edit - input| (grey levels, contrast-stretched to the pair's max), or None."""
    from PIL import Image

    from instructx2x.core.images import UnreadableImage, read_gray

    try:
        a = read_gray(input_path, check_content=False).astype("int16")
        b = read_gray(edited_path, check_content=False).astype("int16")
    except (UnreadableImage, OSError):
        return None
    if a.shape != b.shape:
        return None
    d = abs(b - a)
    top = max(int(d.max()), 1)
    buf = io.BytesIO()
    Image.fromarray((d * (255.0 / top)).clip(0, 255).astype("uint8")).save(buf, format="PNG")
    return (f'<img class="g" alt="|edit - input|, max {top} grey levels" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')


def gallery_html(records: pd.DataFrame, n: int = 6) -> str:
    ok = records[records["status"] == "ok"]
    pairs = sorted(ok["pair_id"].unique())[:n]
    blocks = []
    for pid in pairs:
        r = ok[ok["pair_id"] == pid].set_index("mode")
        first = r.iloc[0]
        figs = [("input (past)", first["input_path"])]
        for mode in ("rse", "wo_rse"):
            if mode in r.index:
                figs.append((f"{MODE_LABELS[mode]} edit", r.loc[mode, "edited_path"]))
                if mode == "rse":
                    p = r.loc[mode].get("overlay_path")
                    if isinstance(p, str) and Path(p).exists():
                        figs.append(("RSE guidance map over the input", p))
                else:  # wo-RSE has no guidance map: show where it changed the image
                    diff = _difference_png(first["input_path"], r.loc[mode, "edited_path"])
                    if diff is not None:
                        figs.append(("wo-RSE change |edit − input|", diff))
        figs.append(("target (real current)", first["target_path"]))
        cells = "".join(f"<figure>{p if isinstance(p, str) and p.startswith('<img') else _img(p, 'g', cap)}"
                        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                        for cap, p in figs if isinstance(p, str) and (p.startswith("<img") or Path(p).exists()))
        extra = ""
        if "rse" in r.index:
            extra = f" — RSE region: {html.escape(_mask_caption(r.loc['rse'].get('mask_source'), r.loc['rse'].get('mask_detail')))}"
        blocks.append(f'<div class="gallery"><p><b>{html.escape(pid)}</b>: “{html.escape(str(first.get("instruction", "")))}”{extra}</p>{cells}</div>')
    return "".join(blocks) or _na("edited pairs")


def edit_success_html(metrics: dict) -> str:
    es = metrics.get("edit_success")
    if not es:
        return _na("edit success (metrics.json edit_success)")

    def pct(v, c=None):
        if v is None:
            return "n/a"
        return f"{100 * v:.0f}%" + (f" [{100 * c[0]:.0f}, {100 * c[1]:.0f}]" if c else "")

    rows = []
    for mode in ("rse", "wo_rse"):
        m = es.get(mode) or {}
        med, c = m.get("median_ratio"), m.get("median_ratio_interval")
        rows.append({"mode": MODE_LABELS[mode], "region": m.get("region"), "pairs": m.get("n_pairs"),
                     "median distance ratio": "n/a" if med is None else f"{med:.3f}" + (f" [{c[0]:.3f}, {c[1]:.3f}]" if c else ""),
                     "pairs closer than the input": pct(m.get("share_closer"), m.get("share_closer_interval")),
                     "Add/Remove ops": m.get("n_operations"),
                     "evaluator moved as instructed": pct(m.get("share_moved_as_instructed"), m.get("share_moved_interval"))})
    return (_table(pd.DataFrame(rows), "edit-success") +
            "<p class='note'>Distance ratio per pair: mean |edit − target| / mean |input − target| in grey levels, inside "
            "the RSE edit mask for RSE and over the whole image for wo-RSE; below 1 the edit is closer to the target than "
            "the unedited input. Evaluator: share of Add/Remove operations on the evaluator's five findings whose predicted "
            "probability moves up (Add) or down (Remove) from input to edit. 95% bootstrap intervals in brackets.</p>")


def _provenance_files(audit_path) -> str:
    """Commit, package versions and the resolved config from the provenance directory beside the audit."""
    d = Path(audit_path).parent
    parts = []
    git = d / "git.json"
    if git.exists():
        g = json.loads(git.read_text())
        rows = [{"key": k, "value": v if not isinstance(v, (dict, list)) else json.dumps(v)[:200]} for k, v in g.items()]
        parts.append("<h3>Code (git)</h3>" + _table(pd.DataFrame(rows), "git"))
    else:
        parts.append(_na("git commit (results/provenance/git.json)"))
    ver = d / "versions.json"
    if ver.exists():
        v = json.loads(ver.read_text())
        pk = v.get("packages", v) if isinstance(v, dict) else {}
        rows = [{"package": k, "version": str(x)} for k, x in sorted(pk.items()) if not isinstance(x, (dict, list))]
        extra = {k: x for k, x in v.items() if k != "packages" and not isinstance(x, (dict, list))} if isinstance(v, dict) else {}
        rows = [{"package": k, "version": str(x)} for k, x in extra.items()] + rows
        parts.append("<h3>Package versions</h3>" + (_table(pd.DataFrame(rows), "versions") if rows else _na("package versions")))
    else:
        parts.append(_na("package versions (results/provenance/versions.json)"))
    cfg = d / "config.resolved.yaml"
    if cfg.exists():
        parts.append("<h3>Resolved configuration</h3><pre class='config'>" + html.escape(cfg.read_text()) + "</pre>")
    else:
        parts.append(_na("resolved configuration (results/provenance/config.resolved.yaml)"))
    return "".join(parts)


def funnel_html(count_files) -> str:
    rows = []
    for p in sorted(count_files, key=str):
        with open(p, newline="") as fh:
            rows.extend(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        return _na("ledger counts")
    return _table(pd.DataFrame(rows)[["stage", "step", "rows_in", "rows_out", "dropped", "note"]], "funnel")


def evaluator_html(metrics: dict) -> str:
    info = metrics.get("evaluator")
    if not info:
        return ("<p class='note'>Evaluators: torchxrayvision pretrained models (densenet121-res224-all, riken AgeModel, "
                "emory_hiti RaceModel); their published accuracies apply.</p>") if metrics.get("backend") == "xrv" else _na("evaluator accuracies")
    h = info.get("heldout", {})
    rows = [{"measure": k, "value": "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))}
            for k, v in h.items() if not isinstance(v, dict)]
    rows += [{"measure": f"AUROC {f}", "value": "n/a" if v is None else f"{v:.3f}"} for f, v in h.get("patho_auroc_per_finding", {}).items()]
    return (f"<p class='note'>Backend <b>trained</b>: a small CNN trained on {info.get('n_train_images')} real training-split "
            f"images; held-out ({html.escape(str(info.get('heldout_source')))}, {info.get('n_heldout_images')} images) scores below. "
            "Table 2 on this backend is only as meaningful as these numbers.</p>" + _table(pd.DataFrame(rows), "evaluator"))


def provenance_html(audit_path) -> str:
    if not audit_path or not Path(audit_path).exists():
        return _na("provenance audit (results/provenance/audit.json)")
    audit = json.loads(Path(audit_path).read_text())
    flat = {k: v for k, v in audit.items() if not isinstance(v, (dict, list))}
    rows = [{"key": k, "value": v} for k, v in flat.items()]
    for k, v in audit.items():
        if isinstance(v, (dict, list)):
            rows.append({"key": k, "value": f"{len(v)} entries"})
    audit_table = _table(pd.DataFrame(rows), "provenance") if rows else _na("provenance audit")
    return "<h3>Audit</h3>" + audit_table + _provenance_files(audit_path)


def build_report(out_html, *, metrics_path, table1_csv=None, loss_csv=None, montage_png=None, masks_png=None,
                 records_path=None, ledger_counts=(), audit_path=None, index_html=None, n_gallery: int = 6,
                 variations_png=None) -> None:
    metrics = json.loads(Path(metrics_path).read_text())

    def fig(path, what):
        return _img(path, alt=what) if path and Path(path).exists() else _na(what)

    loss = _na("training loss curve (results/model/metrics.csv)")
    if loss_csv and Path(loss_csv).exists():
        loss = f'<img class="fig" alt="loss curve" src="data:image/png;base64,{base64.b64encode(loss_curve_png(loss_csv)).decode()}">'
    t1 = _table(pd.read_csv(table1_csv), "table1") if table1_csv and Path(table1_csv).exists() else _na("Table 1")
    gallery = gallery_html(read_parquet(records_path), n_gallery) if records_path and Path(records_path).exists() else _na("gallery")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>InstructX2X report</title>",
        f"<style>{CSS}</style></head><body><h1>InstructX2X reproduction report</h1>",
        "<h2 id='funnel'>Dataset funnel (ledger counts)</h2>", funnel_html(ledger_counts),
        "<h2>Table 1: MIMIC-EDIT-INSTRUCTION</h2>", t1,
        "<h2>Registration montage</h2>", fig(montage_png, "registration montage"),
        "<h2>Pseudo masks (anatomical prior)</h2>", fig(masks_png, "pseudo masks"),
        "<h2>Training loss</h2>", loss,
        "<h2>Table 2: counterfactual evaluation</h2>", table2_html(metrics),
        "<h2 id='edit-success'>Edit success: did the edits move towards their targets?</h2>", edit_success_html(metrics),
        "<h2>Evaluator accuracies</h2>", evaluator_html(metrics),
        "<h2>Gallery: input, RSE edit, RSE guidance map, wo-RSE edit, wo-RSE change, target</h2>", gallery,
        "<h2>Severity and laterality variations of one input (as the paper's Figure 4)</h2>",
        fig(variations_png, "variations figure"),
        "<h2 id='provenance'>Provenance</h2>", provenance_html(audit_path),
        "</body></html>\n",
    ]
    text = "\n".join(parts)
    write_text(text, out_html)
    if index_html:
        write_text(text, index_html)
    log.info("report written: %s (%d bytes)", out_html, len(text))
