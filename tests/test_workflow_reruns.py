"""Partial re-runs of the real DAG: which jobs a config or code change schedules.

Every scenario starts from a fresh copy of ONE finished small demo run (session fixture
``small_run`` in conftest.py) and asks Snakemake for a dry run (``-n``). The expected set of rules
is computed from the workflow's own rule graph (``--rulegraph``): the rules whose params change
plus everything downstream of them, and nothing else. Explicit "never" lists make a test fail if,
say, a gate threshold started re-running the registration itself.

The fast tests at the end check the rule files statically: every rule has a code version in its
params (what makes a library edit re-run it), and the heavy rules ask for more memory and time on
each retry.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# rule names in the order of the stages (used only for readable messages and the "never" lists)
ACQUIRE_TO_PAIRS = {"demo_data", "ingest", "views_train", "views_score", "views_pa", "pairs"}
REGISTRATION_HEAVY = {"registration_shard", "registration_gather"}
INSTRUCTIONS = {"instructions_operations", "instructions_build"}
TRAINING = {"training_prepare", "training_latents_job", "training_latents", "training_train"}


# --- Snakemake output parsing ------------------------------------------------------------------

def parse_job_stats(text: str) -> Counter:
    """The first ``Job stats:`` table of Snakemake's output as {rule: count}; empty when nothing is to be done."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            jobs = Counter()
            for row in lines[i + 3:]:  # header, dashes, then "rule count" rows until "total"
                parts = row.split()
                if not parts or parts[0] == "total":
                    break
                assert len(parts) == 2 and parts[1].isdigit(), f"unexpected job stats row: {row!r}"
                jobs[parts[0]] = int(parts[1])
            return jobs
    assert "Nothing to be done" in text, f"no job stats and not 'Nothing to be done':\n{text[-3000:]}"
    return Counter()


def parse_reasons(text: str) -> dict[str, list[str]]:
    """{rule: [reason line of each of its jobs]} from a dry run's job blocks."""
    reasons: dict[str, list[str]] = {}
    rule = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):\s*$", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+reason: (.*)$", line)
        if m and rule:
            reasons.setdefault(rule, []).append(m.group(1))
            rule = None
    return reasons


def parse_rulegraph(dot: str) -> dict[str, set[str]]:
    """{rule: set of rules that consume its outputs} from ``--rulegraph dot``."""
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, flags=re.M))
    children: dict[str, set[str]] = {n: set() for n in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M):
        children[names[a]].add(names[b])
    assert len(children) > 10, dot[:2000]
    return children


def downstream(graph: dict[str, set[str]], roots: set[str]) -> set[str]:
    """``roots`` and every rule reachable from them."""
    assert roots <= graph.keys(), roots - graph.keys()
    seen, todo = set(roots), list(roots)
    while todo:
        for child in graph[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def dry_run(small_run, overlay: dict | None = None) -> tuple[Counter, dict[str, list[str]], str]:
    configfiles = []
    if overlay is not None:
        (small_run.work / "mutation.yaml").write_text(yaml.safe_dump(overlay))
        configfiles = ["mutation.yaml"]
    proc = small_run.run("-n", configfiles=configfiles, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    return parse_job_stats(text), parse_reasons(text), text


def simulate_code_edit(work: Path, module: str) -> Path:
    """Append a comment to a library module of the run's copy (what a real edit does to its code version)."""
    rel = module.replace(".", "/")
    path = work / "src" / "instructx2x" / (f"{rel}.py" if (work / "src/instructx2x" / f"{rel}.py").exists() else f"{rel}/__init__.py")
    assert path.is_file(), path
    with open(path, "a") as fh:
        fh.write("\n# simulated code edit (tests/test_workflow_reruns.py)\n")
    return path


@pytest.fixture(scope="module")
def rulegraph(small_run) -> dict[str, set[str]]:
    small_run.fresh_copy()
    proc = small_run.run("--rulegraph", "dot", "--forceall", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return parse_rulegraph(proc.stdout)


@pytest.fixture(scope="module")
def run_config(small_run) -> dict:
    return yaml.safe_load((small_run.pristine / "run_config.yaml").read_text())


def _explain(jobs: Counter, expected: set[str]) -> str:
    return f"scheduled {dict(jobs)}; unexpected {sorted(set(jobs) - expected)}; missing {sorted(expected - set(jobs))}"


# --- the scenarios -----------------------------------------------------------------------------

@pytest.mark.slow
def test_finished_run_is_up_to_date(small_run):
    small_run.fresh_copy()
    jobs, _, text = dry_run(small_run)
    assert not jobs, text[-3000:]


@pytest.mark.slow
def test_rse_tau_reruns_only_inference_evaluation_and_report(small_run, rulegraph, run_config):
    small_run.fresh_copy()
    tau = run_config["rse"]["tau"]
    jobs, reasons, _ = dry_run(small_run, {"rse": {"tau": round(tau + 0.15, 3)}})
    # the rules that read rse settings, then everything that follows them in the DAG
    expected = downstream(rulegraph, {"infer", "report_variations"})
    assert set(jobs) == expected, _explain(jobs, expected)
    assert {"infer", "inference_records", "evaluation", "report_variations", "report", "provenance"} <= set(jobs)
    never = ACQUIRE_TO_PAIRS | REGISTRATION_HEAVY | {"registration_gate", "registration_montage"} | INSTRUCTIONS \
        | TRAINING | {"masks", "evaluation_train"}
    assert not set(jobs) & never, _explain(jobs, expected)
    assert jobs["infer"] == run_config["inference"]["shards"]  # every shard, once
    assert all("Params have changed" in r for r in reasons["infer"]), reasons["infer"]


@pytest.mark.slow
def test_mi_threshold_reruns_the_gate_not_the_registration(small_run, rulegraph, run_config):
    small_run.fresh_copy()
    threshold = run_config["registration"]["mi_threshold"]
    jobs, reasons, _ = dry_run(small_run, {"registration": {"mi_threshold": round(threshold - 0.02, 4)}})
    expected = downstream(rulegraph, {"registration_gate"})
    assert set(jobs) == expected, _explain(jobs, expected)
    assert {"registration_gate", "registration_montage", "instructions_build"} <= set(jobs)
    never = ACQUIRE_TO_PAIRS | REGISTRATION_HEAVY | {"instructions_operations", "masks"}
    assert not set(jobs) & never, _explain(jobs, expected)
    assert all("Params have changed" in r for r in reasons["registration_gate"]), reasons["registration_gate"]


@pytest.mark.slow
def test_job_sizes_alone_rerun_nothing(small_run, run_config):
    """Resources (cluster sizing) are not results: other mem_mb/runtime/CPUs for training or more
    inference threads must not retrain or re-edit anything."""
    small_run.fresh_copy()
    overlay = {"training": {"mem_mb": 123000, "runtime": 4321, "cpus_per_gpu": 3, "cpu_threads": 2},
               "inference": {"threads": run_config["inference"]["threads"] + 1}}
    jobs, _, text = dry_run(small_run, overlay)
    assert not jobs, text[-3000:]


# module edited -> the rules whose `code=code_version(...)` covers it (the roots of the re-run)
CODE_EDITS = {
    "pairs": {"pairs"},
    "masks.pseudo": {"masks", "infer", "report_variations"},
    "masks.region": {"infer", "report_variations"},
    "training.module": {"training_train"},
    "registration.stage": {"registration_shard", "registration_gather", "registration_gate", "registration_montage"},
}
CODE_EDIT_NEVER = {
    "pairs": {"demo_data", "ingest", "views_train", "views_score", "views_pa", "instructions_operations", "masks"},
    "masks.pseudo": ACQUIRE_TO_PAIRS | REGISTRATION_HEAVY | INSTRUCTIONS | TRAINING | {"evaluation_train"},
    "masks.region": ACQUIRE_TO_PAIRS | REGISTRATION_HEAVY | INSTRUCTIONS | TRAINING | {"evaluation_train", "masks"},
    "training.module": ACQUIRE_TO_PAIRS | REGISTRATION_HEAVY | INSTRUCTIONS | {"training_prepare", "training_latents_job",
                                                                                "training_latents", "masks",
                                                                                "evaluation_train"},
    "registration.stage": ACQUIRE_TO_PAIRS | {"instructions_operations", "masks"},
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(CODE_EDITS))
def test_code_edit_reruns_that_stage_and_what_follows(small_run, rulegraph, module):
    work = small_run.fresh_copy()
    simulate_code_edit(work, module)
    jobs, reasons, _ = dry_run(small_run)
    expected = downstream(rulegraph, CODE_EDITS[module])
    assert set(jobs) == expected, _explain(jobs, expected)
    assert not set(jobs) & CODE_EDIT_NEVER[module], _explain(jobs, expected)
    # a root that no other root feeds re-runs because of its own code param (Snakemake names one
    # reason per job: a root fed by another root is reported as "input files updated")
    roots = CODE_EDITS[module]
    for rule in roots:
        if rule not in downstream(rulegraph, roots - {rule}) - (roots - {rule}):
            assert all("Params have changed" in r for r in reasons[rule]), (rule, reasons.get(rule))


# --- static checks of the rule files (fast) --------------------------------------------------

def rule_blocks() -> dict[str, str]:
    """{rule name: its text} for every rule of rules/*.smk (rules inside if-blocks included)."""
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)rule (\w+):\s*$", line)
            if not m:
                continue
            indent, body = len(m.group(1)), []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            blocks[m.group(2)] = "\n".join(body)
    return blocks


def directive(block: str, name: str) -> str:
    """The text of one directive (``params:``, ``resources:``) of a rule block."""
    lines = block.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"{name}:":
            indent = len(line) - len(line.lstrip())
            out = []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                out.append(nxt)
            return "\n".join(out)
    return ""


def test_every_rule_has_a_code_version_param():
    blocks = rule_blocks()
    assert len(blocks) >= 25, sorted(blocks)
    missing = [name for name, block in blocks.items()
               if not re.search(r"^\s+code=(code_version\(|TRAIN_CODE)", directive(block, "params"), flags=re.M)]
    assert not missing, f"rules without params code=code_version(...): {missing}"


HEAVY_RULES = ["demo_data", "physionet_tables", "physionet_images", "local_manifest", "ingest", "views_train",
               "views_score", "registration_shard", "instructions_operations", "training_prepare", "training_latents_job",
               "training_train", "infer", "evaluation_train", "evaluation", "report_variations", "provenance"]


@pytest.mark.parametrize("rule", HEAVY_RULES)
def test_heavy_rules_grow_memory_and_time_with_attempt(rule):
    resources = directive(rule_blocks()[rule], "resources")
    for key in ("mem_mb", "runtime"):
        assert re.search(rf"^\s+{key}=lambda wildcards, attempt: .*\* attempt,", resources, flags=re.M), \
            f"{rule}: {key} does not grow with attempt:\n{resources}"


def test_training_states_its_cluster_needs():
    resources = directive(rule_blocks()["training_train"], "resources")
    for key in ("gpu", "tasks", "nodes", "cpus_per_gpu", "mem_mb", "runtime"):
        assert re.search(rf"^\s+{key}=", resources, flags=re.M), (key, resources)
    assert re.search(r"^\s+threads:", rule_blocks()["training_train"], flags=re.M)
