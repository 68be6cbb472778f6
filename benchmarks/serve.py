"""Benchmark: an edit through `instructx2x serve` (POST /api/edit) against the CLI's edit, same settings.

One demo-shaped model (the demo's architecture, ``model.tiny`` of config.yaml, random weights; built
offline by tests/helpers/demo_editor.py), one demo-sized input, the demo's sampler settings.
  - baseline, the CLI's edit: what ``instructx2x edit`` does once its model is loaded (read the image,
    ``Editor.edit``, write the PNGs and record.json), in this process with ``--threads`` torch threads;
  - ours, the server: ``instructx2x serve --threads N`` in its own process; one ``POST /api/edit``
    (multipart upload, decoding, queue, the same ``Editor.edit``, PNG + base64 + JSON answer), timed
    by the client (wall) and by the server process's CPU time (psutil).
Runs alternate (the other side idle), after a warm-up; medians of ``--repeats``. The goal: an edit
via the server costs within 10% of the CLI's edit (ratio <= 1.10). For context, a whole cold
``instructx2x edit`` process (start-up, model load, edit) is also timed once.
Appends/updates a section of benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/serve.py [--size 128] [--steps 20] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/helpers: the demo-shaped editor builder
SECTION = "## serve: an edit via the web server against the CLI's edit"
INSTRUCTION = "Add a moderate left pleural effusion"


def post_edit(url: str, image: bytes, settings: dict) -> dict:
    boundary = "----instructx2x-bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\n\r\n{json.dumps(settings)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"in.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "api/edit", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=3600) as resp:
        return json.loads(resp.read())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="image side (the demo: 128)")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps (the demo: 20)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = ap.parse_args(argv)

    import psutil
    import torch

    from helpers.demo_editor import build_demo_editor
    from instructx2x.core.images import read_gray
    from instructx2x.inference.edit import write_result
    from instructx2x.inference.editor import Editor, EditSettings

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    demo = build_demo_editor(tmp, size=args.size)
    image_path = sorted(demo["gallery"].glob("*.png"))[0]
    image_bytes = image_path.read_bytes()
    settings = {"instruction": INSTRUCTION, "seed": 0, "steps": args.steps, "tau": 0.1, "rse": True}
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(args.threads)}

    # a cold CLI process, once (start-up + model load + edit), for context
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "instructx2x.cli", "edit", "--model", str(demo["model"]), "--masks",
                    str(demo["masks"]), "--image", str(image_path), "--instruction", INSTRUCTION, "--steps",
                    str(args.steps), "--out", str(tmp / "cold")], check=True, env=env, capture_output=True)
    cold_cli = time.perf_counter() - t

    server = subprocess.Popen([sys.executable, "-m", "instructx2x.cli", "serve", "--model", str(demo["model"]),
                               "--masks", str(demo["masks"]), "--gallery", "", "--port", "0", "--threads",
                               str(args.threads)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = server.stdout.readline()
        url = line.rsplit("open ", 1)[1].strip()
        proc = psutil.Process(server.pid)

        editor = Editor(demo["model"], pseudo_masks=demo["masks"], region_settings={"restrict_laterality": True})
        est = EditSettings(**settings).validate()

        def cli_edit(i):
            image = read_gray(image_path)
            result = editor.edit(image, est)
            write_result(result, str(tmp / f"cli_{i}"))
            return result.images()["edited"]

        def served(i):
            return post_edit(url, image_bytes, settings)

        import base64

        same = base64.b64decode(served(-1)["images"]["edited"]) == cli_edit(-1)  # warm-up, and the same bytes
        cpu = {"cli": [], "serve": []}
        wall = {"cli": [], "serve": []}
        for i in range(args.repeats):
            w, c = time.perf_counter(), time.process_time()
            cli_edit(i)
            wall["cli"].append(time.perf_counter() - w)
            cpu["cli"].append(time.process_time() - c)
            w, c0 = time.perf_counter(), sum(proc.cpu_times()[:2])
            served(i)
            wall["serve"].append(time.perf_counter() - w)
            cpu["serve"].append(sum(proc.cpu_times()[:2]) - c0)
    finally:
        server.terminate()
        server.wait(timeout=30)

    med = {k: statistics.median(v) for k, v in cpu.items()}
    medw = {k: statistics.median(v) for k, v in wall.items()}
    r_cpu, r_wall = med["serve"] / med["cli"], medw["serve"] / medw["cli"]
    for k in cpu:
        print(f"{k:6s} median CPU {med[k]:.3f} s, wall {medw[k]:.3f} s (wall runs: {', '.join(f'{x:.3f}' for x in wall[k])})")
    print(f"serve / cli: CPU {r_cpu:.3f}, wall {r_wall:.3f} (goal <= 1.10); same edited bytes: {same}; "
          f"cold CLI process {cold_cli:.1f} s")
    if args.no_write:
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    spread = ", ".join(f"{k} {100 * (max(v) - min(v)) / medw[k]:.0f}%" for k, v in wall.items())
    lines = [
        SECTION,
        "",
        f"- machine: {platform.node() or 'vm'} ({platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads},"
        f" load average {load:.1f} at the end), Python {platform.python_version()}, torch {torch.__version__}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python benchmarks/serve.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- model: the demo's architecture (config.yaml model.tiny, random weights), image {args.size}x{args.size},"
        f" {args.steps} DDIM steps, RSE with pseudo masks; median of {args.repeats} alternating runs after a warm-up",
        "",
        "| run | median wall (s) | median CPU (s) | ratio wall | ratio CPU | goal |",
        "|---|---:|---:|---:|---:|---|",
        f"| CLI's edit (`instructx2x edit` after its model load) | {medw['cli']:.3f} | {med['cli']:.3f} | 1.00 | 1.00 | baseline |",
        f"| `POST /api/edit` (client wall; server process CPU) | {medw['serve']:.3f} | {med['serve']:.3f} | {r_wall:.3f} |"
        f" {r_cpu:.3f} | <= 1.10 |",
        "",
        f"- the served edit returned the same edited PNG bytes as the CLI's: {same}",
        f"- a whole cold `instructx2x edit` process (Python start-up, model load, one edit) took {cold_cli:.1f} s wall:"
        " what the server saves per edit by loading the model once.",
        f"- run-to-run spread of wall time ((max - min) / median): {spread}.",
        "",
    ]
    replace_section(SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
