"""Download throughput: sequential transfers (one at a time, as `wget -i`) vs our parallel fetcher.

Both runs use the same code path (``instructx2x.acquire.fetcher.Fetcher``) and the same loopback
PhysioNet mirror with a fixed per-request latency standing in for the round trip to
physionet.org; only ``workers`` differs. Appends/updates a section of benchmarks/RESULTS.md.

    python benchmarks/download.py [--files 120] [--size 200000] [--latency 0.05] [--workers 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from instructx2x.acquire.credentials import Credentials
from instructx2x.acquire.fetcher import Fetcher, FileTask, Settings
from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-only loopback mirror
from helpers.physionet_mirror import PhysioNetMirror, write_sha256sums  # noqa: E402

SECTION = "## Download: parallel verified transfers vs sequential"


def make_tree(root: Path, n: int, size: int) -> list[str]:
    version = root / "physionet.org/files/mimic-cxr-jpg/2.1.0"
    rels = []
    for i in range(n):
        rel = f"files/p10/p1000{i:04d}/s5000{i:04d}/{i:08x}-00000000-00000000-00000000-00000000.jpg"
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = hashlib.sha256(str(i).encode()).digest()
        path.write_bytes((seed * (size // 32 + 1))[:size])
        rels.append(rel)
    write_sha256sums(version)
    return rels


def run(mirror: PhysioNetMirror, root: Path, rels: list[str], workers: int, dest: Path) -> float:
    sums = dict(reversed(line.split(" ", 1)) for line in
                (root / "physionet.org/files/mimic-cxr-jpg/2.1.0/SHA256SUMS.txt").read_text().splitlines())
    settings = Settings(base_url=mirror.base_url, workers=workers, progress=False)
    fetcher = Fetcher(settings, Credentials("bench", "bench-pw"), dest / "quarantine")
    tasks = [FileTask("mimic_cxr_jpg", r, f"{mirror.base_url}mimic-cxr-jpg/2.1.0/{r}", dest / r, sums[r]) for r in rels]
    t0 = time.perf_counter()
    results = fetcher.fetch_all(tasks, "bench")
    elapsed = time.perf_counter() - t0
    assert all(r.status == "ok" for r in results), [r.reason for r in results if r.status != "ok"]
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_download_"))
    try:
        rels = make_tree(tmp / "srv", args.files, args.size)
        times = {1: [], args.workers: []}
        with PhysioNetMirror(tmp / "srv/physionet.org", "bench", "bench-pw") as mirror:
            mirror.latency_s = args.latency
            for rep in range(args.repeats):
                for w in times:
                    dest = tmp / f"dest_{w}_{rep}"
                    times[w].append(run(mirror, tmp / "srv", rels, w, dest))
                    shutil.rmtree(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {w: sorted(v)[len(v) // 2] for w, v in times.items()}
    mb = args.files * args.size / 1e6
    cmd = "python benchmarks/download.py " + " ".join(sys.argv[1:])
    text = f"""{SECTION}

- machine: {platform.node() or 'vm'} ({platform.machine()}, {os.cpu_count()} CPUs), Python {platform.python_version()}
- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC
- command: `{cmd.strip()}`
- setup: {args.files} files of {args.size:,} bytes ({mb:.1f} MB) from the loopback mirror
  (`tests/helpers/physionet_mirror.py`, HTTP Basic auth) with {args.latency * 1000:.0f} ms added per request;
  every file streamed to `.part`, SHA-256 checked, renamed; median of {args.repeats} interleaved runs
- baseline: `workers: 1` (one transfer at a time, like `wget -i`); ours: `workers: {args.workers}` (the default)

| run | median wall (s) | MB/s | speed-up |
|---|---:|---:|---:|
| sequential (workers 1) | {med[1]:.2f} | {mb / med[1]:.1f} | 1.00 |
| parallel (workers {args.workers}) | {med[args.workers]:.2f} | {mb / med[args.workers]:.1f} | {med[1] / med[args.workers]:.2f}x |

- the gain comes from overlapping per-request latency; against physionet.org the bound is the
  site's bandwidth and politeness, not this machine. Not measured against PhysioNet itself.
"""
    print(text)
    replace_section(SECTION, text)


if __name__ == "__main__":
    main()
