# tvae-book: thin wrappers over `python -m tvae_book` and pytest.
#   make book                        install, train every model as jobs (one per core), execute the chapters (cpu), build the HTML
#   make book WEIGHTS=<url or path>  the same, the weight cache first filled from a bundle (verified; the rest trains)
#   make weights-pack PROFILE=cpu    every trained model of a profile in one bundle: _build/tvae-weights-<profile>.tar
#   make test                        unit tests + every chapter in the smoke profile
#   make reproduce PROFILE=paper     execute with a profile; results + report in _results/<profile>/
#   make reproduce PROFILE=paper DRY_RUN=3   the paper's sizes, 3 steps per model: time/memory/FLOPs per model
#   make train PROFILE=paper WORKERS=4 [ENGINE=slurm]   train every model ahead as jobs (then chapters only load)
#   make gpu-check                   on a GPU: step times, ensembles of 1/4/16, chapter 4 cut short, the paper's GPU-hours
#   make lab                         JupyterLab on the chapters, live (book/NN_name.md open as notebooks)
#   make mutate                      mutation testing of tvae_core and the claim machinery (mutmut, slow) + score
# Optional: SEED=0 DEVICE=auto DATA_DIR=/path  (passed to every chapter's parameters cell)
#           PARAMS="n_seeds=2"  (extra chapter parameters, e.g. two seeds in chapter 5)
#           SLURM="slurm_partition=gpu timeout_min=720"  (submitit parameters of make train ENGINE=slurm)

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
PROFILE  ?= cpu
SEED     ?= 0
DEVICE   ?= auto
DATA_DIR ?=
PARAMS   ?=
DRY_RUN  ?= 0
WEIGHTS  ?=
WORKERS  ?= 1
BOOK_WORKERS ?= auto
TEST_WORKERS ?= 2
ENGINE   ?= local
ENSEMBLE ?= auto
SLURM    ?=
RUN_ARGS  = --profile $(PROFILE) --seed $(SEED) --device $(DEVICE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(foreach p,$(PARAMS),--param $(p))
WEIGHTS_ARG = $(if $(WEIGHTS),--weights $(WEIGHTS))

.PHONY: help install book reproduce report train weights-pack test test-paper gpu-check device-wheels lab test-lab mutate clean distclean

help:
	@sed -n '2,14p' Makefile | sed 's/^# //'

install: $(STAMP)

# (Re)install when pyproject.toml changes. The kernelspec "python3" is registered inside the venv
# for a plain `jupyter-book build .` or papermill by hand; the runner always uses the venv python.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[book,chem,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (tvae-book)"
	touch $@

book: $(STAMP)
	$(PY) -m tvae_book book $(RUN_ARGS) --workers $(BOOK_WORKERS) $(WEIGHTS_ARG)

reproduce: $(STAMP)
	$(PY) -m tvae_book run $(RUN_ARGS) --workers $(BOOK_WORKERS) $(WEIGHTS_ARG) $(if $(filter-out 0,$(DRY_RUN)),--dry-run $(DRY_RUN))

# The chapters' trainings as independent jobs (tvae_book/jobs.py): prints the plan, trains what is not
# cached on WORKERS local processes (one GPU each when there are GPUs) or as a Slurm array (ENGINE=slurm).
train: $(STAMP)
	$(if $(filter slurm slurm_local,$(ENGINE)),$(PY) -m pip install -q -e ".[cluster]")
	$(PY) -m tvae_book train $(RUN_ARGS) --workers $(WORKERS) --engine $(ENGINE) --ensemble $(ENSEMBLE) $(foreach p,$(SLURM),--slurm $(p))

# Every trained model the profile's chapters use, in one verified bundle (tvae_experiments/bundles.py); the
# weights must be in the cache (make train / make book first).
weights-pack: $(STAMP)
	$(PY) -m tvae_book weights pack $(RUN_ARGS)

report: $(STAMP)
	$(PY) -m tvae_book report $(RUN_ARGS)

# Two pytest-xdist workers (one torch thread each; chapters shared through a file lock, tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

# The paper profile's capsule chapters as a dry run on the CPU (the papers' sizes, 2 steps per model): the
# paper configs cannot rot. CI runs it after `make test` (.ci/run).
test-paper: $(STAMP)
	$(PY) -m pytest -q tests_paper

# The device check (benchmarks/gpu_check.py): on a GPU the paper size (the plan read from
# benchmarks/paper_plan.json, written by `gpu_check.py --write-plan paper ...`), on a CPU the small size
# that `make test` runs too. Writes _results/gpu-check/gpu_check.{json,md}.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

# Wheels for benchmarks/device_check.sh on a GPU machine without network (its python 3.12 image has torch):
# the chapter run's packages, less what the image holds, into .whl/ (ignored; carry it to the machine).
DEVICE_HAS := numpy scipy pandas matplotlib scikit.learn pillow fonttools kiwisolver contourpy cycler pyparsing \
	python.dateutil six packaging pygments jinja2 markupsafe pyyaml tqdm typing.extensions tzdata attrs \
	certifi charset.normalizer idna requests urllib3 click markdown.it.py mdurl joblib threadpoolctl psutil \
	filelock fsspec networkx sympy mpmath setuptools wheel pip zipp tabulate rich narwhals
device-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform any -d .whl -r benchmarks/device_wheels.txt
	cd .whl && for w in *.whl; do n=$$(echo $$w | sed 's/-[0-9].*//' | tr 'A-Z_' 'a-z.'); \
		case " $(DEVICE_HAS) " in *" $$n "*) rm $$w;; esac; done; du -sh .

# Running the chapters live: JupyterLab with the jupytext extension (right-click a book/NN_name.md >
# Open With > Notebook; the first cell switches profile, seed, device). test-lab (not in `make test`:
# it would exceed its 5-minute budget) checks that the server serves a chapter as a notebook that
# executes in smoke size, and that a chapter runs under plain `jupyter nbconvert --execute`.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	$(PY) -m pip install -q -e ".[lab]"
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) $(LAB_ROOT)

test-lab: $(STAMP)
	$(PY) -m pip install -q -e ".[lab]"
	$(PY) -m pytest -q tests_lab

# Mutation testing (mutmut 3, settings in pyproject.toml [tool.mutmut]): mutants of tvae_core run
# against its fast unit tests; the report explains survivors from tests/equivalent_mutants.toml.
# Results are kept in mutants/ (a rerun only re-tests what changed); delete it for a clean run.
mutate: $(STAMP)
	$(PY) -m pip install -q -e ".[mutation]"
	$(PY) -m mutmut run --max-children $$(nproc) || true
	$(PY) benchmarks/mutation_report.py --list

clean:
	rm -rf _build _results .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info mutants
