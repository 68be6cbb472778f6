# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make demo   -> runs the whole Snakemake DAG on the embedded synthetic dataset
#   make test   -> runs the test suite
# Both create .venv/ (if missing) and install the pinned dependencies into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test test-slow test-slurm lint clean-results venv browser

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.14.1 / torchvision==0.29.1 are pinned in requirements.lock (served from local disk on the CI machines)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)
	@echo ""
	@echo "report: results/report/index.html"
	@echo "edit in the browser: $(BIN)/instructx2x serve --model results/model/pipeline   (then open http://127.0.0.1:7860/)"

# headless Chromium for the report's browser test (tests/test_report.py); installed once, quietly
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || { echo "error: chromium missing and apt-get unavailable; install chromium for the report test"; exit 1; }; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) browser
	$(BIN)/python -m pytest -q -m slow

test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m slurm

lint: $(STAMP)
	$(BIN)/snakemake --lint --profile profiles/local

clean-results:
	rm -rf results .snakemake
