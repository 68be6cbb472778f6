"""What separates a demo pair's input from its target, on the train/val pairs of a finished run.

The editor's edit-success measure compares |edit - target| with |input - target|. This measures,
per val pair (never test/holdout) at the working resolution, the whole-image mean absolute
difference input vs target in grey levels, and what is left of it after a per-pair linear
intensity fit (target -> input: exposure) and after histogram matching (exposure and gamma): the
part an editor cannot learn from the instruction, because the generator draws each study's
exposure, gamma and noise independently. Writes a section of benchmarks/RESULTS.md with --write.

Several RESULTS_DIRs (e.g. a demo made before and one after a generator change) give one line each.

Usage: .venv/bin/python benchmarks/demo_pair_differences.py RESULTS_DIR [RESULTS_DIR ...] [--splits val] [--write]
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from results_md import replace_section  # noqa: E402

from instructx2x.training.data import load_image, read_instructions  # noqa: E402


def _measure(results: Path, splits, resolution: int) -> str:
    df = read_instructions(results / "instructions" / "instructions.parquet", splits)
    raw, lin, hist, dmean = [], [], [], []
    for r in df.itertuples(index=False):
        p = (load_image(r.past_image, resolution)[0].numpy() + 1) * 127.5
        c = (load_image(r.current_image, resolution)[0].numpy() + 1) * 127.5
        raw.append(np.abs(p - c).mean())
        dmean.append(abs(p.mean() - c.mean()))
        A = np.stack([c.ravel(), np.ones(c.size)], 1)
        coef = np.linalg.lstsq(A, p.ravel(), rcond=None)[0]
        lin.append(np.abs(A @ coef - p.ravel()).mean())
        m = np.empty(c.size)
        m[np.argsort(c.ravel(), kind="stable")] = np.sort(p.ravel())
        hist.append(np.abs(m - p.ravel()).mean())
    med = {k: float(np.median(v)) for k, v in (("raw", raw), ("mean", dmean), ("linear", lin), ("hist", hist))}
    text = (f"{len(df)} {'/'.join(splits)} pairs of {results}: input vs target mean |difference| median "
            f"{med['raw']:.1f} grey levels; difference of the image means {med['mean']:.1f}; after a per-pair linear "
            f"intensity fit {med['linear']:.1f}; after histogram matching {med['hist']:.1f}")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--splits", default="val", help="comma-separated; train/val only (never test/holdout)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--labels", default=None, help="comma-separated label per RESULTS_DIR (e.g. the generator version)")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    splits = a.splits.split(",")
    if set(splits) - {"train", "val"}:
        raise SystemExit("only train/val pairs may be looked at here")
    labels = a.labels.split(",") if a.labels else [""] * len(a.results)
    texts = [(f"{lab}: " if lab else "") + _measure(r, splits, a.resolution) for r, lab in zip(a.results, labels)]
    for text in texts:
        print(text)
    if a.write:
        block = (f"## Demo pairs: what separates input from target (issue 15)\n\n"
                 f"Machine: {platform.machine()}, {platform.system()}; date "
                 f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}; command "
                 f"`.venv/bin/python benchmarks/demo_pair_differences.py {' '.join(map(str, a.results))} --splits {a.splits} "
                 + (f"--labels '{a.labels}' " if a.labels else "")
                 + "--write`.\n\n" + "".join(f"- {t}.\n" for t in texts))
        replace_section("## Demo pairs: what separates input from target (issue 15)", block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
