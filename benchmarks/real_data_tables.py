"""The real-data numbers of README.md ("Using the real data") and docs/registration.md, beside the
demo's, from the recorded runs in benchmarks/real_run/ (never typed by hand):

- ``registration_real.json``: ``benchmarks/registration_real.py`` (real radiographs, ../shared/real-cxr);
- ``views_real.json``: ``benchmarks/views_real.py`` (real radiographs and a demo dataset);
- ``registration_demo_16.json``: ``benchmarks/registration_demo.py --write`` (demo datasets, the generator's truth).

    python benchmarks/real_data_tables.py --write    rewrite the <!-- real_data:NAME --> blocks
    python benchmarks/real_data_tables.py --check    exit 1 when a block differs from the records

tests/test_real_data_tables.py fails when the blocks differ from the records.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / "benchmarks" / "real_run"
FILES = {"README.md": ("summary",), "docs/registration.md": ("summary", "calibration")}


def load(run_dir: Path = RUN_DIR) -> dict:
    return {name: json.loads((run_dir / f"{name}.json").read_text())
            for name in ("registration_real", "views_real", "registration_demo_16")}


def _frac(v) -> str:
    n, d = v
    return f"{n}/{d}" + (f" ({100 * n / d:.0f}%)" if d else "")


def _planted(d: dict, key: str, kind: str) -> str:
    v = d[key].get(kind)
    return _frac(v) if v else "none planted"


def render(records: dict) -> dict:
    r, v, d = records["registration_real"], records["views_real"], records["registration_demo_16"]
    t, acc = r["targets"], r["accuracy"]
    c = r["counts"]
    rows = [
        ("follow-ups the paper's MI gate keeps, kept by our gate (≥ 90%)",
         [_frac(t[h]["follow_ups_kept_of_mi_kept"]) for h in ("held-out", "all")],
         f"good pairs kept {_frac(d['good_kept'])}"),
        ("other-patient pairs kept (≤ 10%); flagged among them",
         [f"{_frac(t[h]['other_patient_kept'])}; {c['other patient|' + h]['flagged']} flagged" for h in ("held-out", "all")],
         f"planted foreign images kept {_planted(d, 'planted_kept', 'foreign_image')}"),
        ("mirrors not kept (100%)", [_frac(t[h]["mirrors_not_kept"]) for h in ("held-out", "all")],
         f"planted mirrors not kept {_planted(d, 'planted_not_kept', 'mirrored')}"),
        ("known transforms within 1 px at 512² (all); max error",
         [f"{_frac(t[h]['known_within_1px'])}; max {acc[h]['max_px']:.2f} px" for h in ("held-out", "all")],
         f"good pairs within 1 px and 0.5° {_frac(d['good_within_1px'])}; max {d['good_max_px']:.2f} px"),
        ("before (32 bins on every level): within 1 px; max error",
         [f"{r['accuracy_baseline'][h]['within_1px']}/{r['accuracy_baseline'][h]['n']}; max "
          f"{r['accuracy_baseline'][h]['max_px']:.2f} px" for h in ("held-out", "all")], "(the demo keeps its setting)"),
        ("time per pair, both registrations (median; shared 2-core machine)",
         ["", f"{acc['all']['seconds_median']:.2f} s at 512² (before: {r['accuracy_baseline']['all']['seconds_median']:.2f} s)"],
         f"{d['seconds_mean']:.2f} s (mean; 128² output, estimated at 256)"),
        ("views: PA precision / recall, classifier cross-fitted by patient",
         ["", f"{v['real']['precision']:.3f} / {v['real']['recall']:.3f}; laterals called lateral "
              f"{v['real']['laterals_called_lateral']}/{v['real']['n_lateral']}"],
         f"{v['demo']['precision']:.3f} / {v['demo']['recall']:.3f} ({v['demo']['pa_missed']} PA missed: "
         f"{v['demo']['pa_missed_cropped_fragments']} a planted cropped fragment)"),
    ]
    lines = ["| | real radiographs: held-out half | real: all patients | demo (synthetic) |", "|---|---|---|---|"]
    lines += [f"| {label} | {a} | {b} | {demo} |" for label, (a, b), demo in rows]
    lines += ["", f"Recorded: `{r['command']}` ({r['date']}, commit {r['commit']}); `{v['command']}` ({v['date']}, commit "
                  f"{v['commit']}); `{d['command']}` ({d['date']}). Written by `python benchmarks/real_data_tables.py --write`."]
    der, sch = r["derived_on_calibration_half"], r["schema_gate"]
    mm = der["mirror_margin_interval"]
    cal = [
        f"Thresholds derived on the calibration half only ({der['n_follow_ups']} MI-kept follow-ups, {der['n_mirrors']} MI-kept "
        f"mirrors; rules in `benchmarks/registration_real.py::derive_thresholds`) against the schema's real-data defaults:",
        "",
        "| threshold | derived on the calibration half | schema default | how |",
        "|---|---|---|---|",
        f"| mi_threshold | (not fitted) | {sch['mi_threshold']} | the paper's |",
        f"| mirror_margin | {der['mirror_margin']} | {sch['mirror_margin']} | 0 is the symmetric value (mirroring a pair's "
        f"current swaps mi and mirror_mi); margins in [0, {mm[1] if mm else float('nan'):.3f}) separated the calibration half |",
        f"| ncc_min | {der['ncc_min']} | {sch['ncc_min']} | gross-failure guard: half the lowest follow-up ncc "
        f"({der['follow_up_ncc_min']:.2f}), at most 0.25 |",
        f"| structure_ncc_min (flag only) | {der['structure_ncc_min']} | {sch['structure_ncc_min']} | lowest structure_ncc of "
        f"the MI-kept follow-ups, rounded down to 0.05 |",
        "",
        f"Held-out half with the thresholds derived on the calibration half: MI-kept follow-ups kept "
        f"{_frac(r['targets_with_derived_thresholds']['held-out']['follow_ups_kept_of_mi_kept'])}, other-patient pairs kept "
        f"{_frac(r['targets_with_derived_thresholds']['held-out']['other_patient_kept'])}, mirrors not kept "
        f"{_frac(r['targets_with_derived_thresholds']['held-out']['mirrors_not_kept'])}.",
    ]
    return {"summary": "\n".join(lines), "calibration": "\n".join(cal)}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- real_data:{name} -->\n)((?:.*?\n)?)(<!-- /real_data:{name} -->)", re.S)


def read_block(text: str, name: str) -> str | None:
    m = _pattern(name).search(text)
    return m.group(2).removesuffix("\n") if m else None


def write_blocks(text: str, blocks: dict, names) -> str:
    for name in names:
        if not _pattern(name).search(text):
            raise ValueError(f"no block <!-- real_data:{name} --> ... <!-- /real_data:{name} -->")
        text = _pattern(name).sub(lambda m: m.group(1) + blocks[name] + "\n" + m.group(3), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    blocks = render(load())
    differ = []
    for rel, names in FILES.items():
        path = ROOT / rel
        text = path.read_text()
        new = write_blocks(text, blocks, names)
        if a.write and new != text:
            path.write_text(new)
            print(f"{rel}: written")
        if new != text:
            differ.append(rel)
    if a.check and differ and not a.write:
        print("differ from benchmarks/real_run/: " + ", ".join(differ) + " (run benchmarks/real_data_tables.py --write)")
        return 1
    if not (a.write or a.check):
        print(blocks["summary"] + "\n\n" + blocks["calibration"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
