"""Writing one benchmark's section of benchmarks/RESULTS.md (shared by the benchmark scripts)."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(section: str, block: str, path: Path = RESULTS_MD) -> None:
    """Replace the section whose heading line is ``section`` (up to the next ``## `` heading) by
    ``block``, or append ``block`` when the file has no such section yet. Other sections, and
    hand-written notes inside them, are kept."""
    block = block.rstrip("\n") + "\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if section in text:
        start = text.index(section)
        nxt = text.find("\n## ", start + len(section))
        text = text[:start] + block + ("" if nxt < 0 else "\n" + text[nxt + 1:])
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
