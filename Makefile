# MST toolkit. `make demo` runs the main job on this machine; `make test` runs the tests.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SWEEP ?= loss_weight
# a named budget (sweeps/budgets.yaml) the sweep runs at; empty: the sweep file as written (paper scale)
BUDGET ?=
CLUSTER ?= local
SWEEP_ARGS = $(SWEEP)$(if $(BUDGET), --budget $(BUDGET))
# empty: every command uses the profile's storage.run_root (./runs for CLUSTER=local); set it to override
RUNS ?=
RUNS_ARG = $(if $(RUNS), --runs $(RUNS))
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# Login-node commands (sweep status report resubmit cancel) on a Slurm profile run with the Python of the env
# where the toolkit is installed (the site's env: MST_PY, else PY, else python3 on PATH), never build .venv and
# need neither the data set nor root. CLUSTER=local (no scheduler) runs them from .venv, as `make demo` does.
MST_PY ?=
LOGIN_PY = $(or $(MST_PY),$(PY))
quote = '$(subst ','\'',$(1))'
PROFILE_FILE = $(if $(filter %.yaml %.yml,$(CLUSTER)),$(CLUSTER),clusters/$(CLUSTER).yaml)
LOGIN_GOALS := sweep status report resubmit cancel
ifneq ($(filter $(LOGIN_GOALS),$(MAKECMDGOALS)),)
SCHEDULER := $(shell grep -Eqs '^scheduler:[[:space:]]*slurm' -- $(call quote,$(PROFILE_FILE)) && echo slurm)
endif
ifeq ($(SCHEDULER),slurm)
LOGIN_NEEDS :=
RUN_PY = $(call quote,$(LOGIN_PY))
# (SCHEDULER is only read when a login goal was asked for) one line saying what this Python lacks
# (jobs/cli/login_env.py), before anything runs
LOGIN_PROBLEM := $(shell if command -v $(call quote,$(LOGIN_PY)) >/dev/null 2>&1; \
  then $(call quote,$(LOGIN_PY)) -m jobs.cli.login_env 2>&1; \
  else echo "error: no Python $(call quote,$(LOGIN_PY)) here; activate the site's env (README: installing on a cluster) or set MST_PY=/path/to/env/bin/python"; fi)
$(if $(LOGIN_PROBLEM),$(error $(LOGIN_PROBLEM)))
else
LOGIN_NEEDS := setup
RUN_PY = $(BIN)/python
endif

.PHONY: setup data slurm-up slurm-down test test-fast test-floor demo sweep report status resubmit cancel bench \
	quality method examples examples-train gpu-check lint clean

# The exact tested set (requirements/lock.txt) as constraints: pyproject.toml holds ranges, the lock what runs.
$(BIN)/.installed: pyproject.toml requirements/lock.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/lock.txt -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed data

# Fashion-MNIST comes from a Debian package; nothing is ever downloaded at run time.
data:
	@if [ -f $(FMNIST) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian package dataset-fashion-mnist"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST is missing; run: sudo apt-get install dataset-fashion-mnist"; exit 2; fi

# The real local Slurm clusters (a DCU-like one and a V100-like one) used by the integration tests.
slurm-up:
	@if [ "$$(id -u)" = 0 ]; then bash clusters/local-slurm/start.sh start; \
	else echo "not root: the Slurm integration tests will be skipped (run as root: bash clusters/local-slurm/start.sh)"; fi

slurm-down:
	bash clusters/local-slurm/start.sh stop

test: setup slurm-up
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slurm and not slow"

# The oldest supported stack (torch 2.1.2, torchvision 0.16.2, numpy < 2: requirements/floor.txt) in its own
# venv: the fast suite plus a tiny pretrain -> kill -> resume -> k-NN. Wheels are kept in FLOOR_WHEELS.
test-floor: data
	bash .ci/floor-lane

# the demo: loss_weight at budget smoke unless SWEEP / BUDGET say otherwise
demo: BUDGET = smoke
demo: setup
	$(BIN)/mst-sweep submit $(SWEEP_ARGS) --cluster $(CLUSTER)$(RUNS_ARG)
	$(BIN)/mst-report tables --cluster $(CLUSTER)$(RUNS_ARG) --sweep $(SWEEP_ARGS)

sweep: $(LOGIN_NEEDS)
	$(RUN_PY) -m jobs.cli.sweep submit $(SWEEP_ARGS) --cluster $(CLUSTER)$(RUNS_ARG)

report: $(LOGIN_NEEDS)
	$(RUN_PY) -m analysis.cli tables --cluster $(CLUSTER)$(RUNS_ARG)

# a Slurm profile: the sweep's stages, asking the scheduler (mst-sweep status; its exit 1, "not all done yet",
# is no failure here); local: every sweep's records
status: $(LOGIN_NEEDS)
ifeq ($(SCHEDULER),slurm)
	$(RUN_PY) -m jobs.cli.sweep status $(SWEEP_ARGS) --cluster $(CLUSTER)$(RUNS_ARG) || [ $$? = 1 ]
else
	$(RUN_PY) -m analysis.cli status --cluster $(CLUSTER)$(RUNS_ARG)
endif

# the failed, cancelled or missing stages of SWEEP only (DRY_RUN=1: list them and why, submit nothing)
resubmit: $(LOGIN_NEEDS)
	$(RUN_PY) -m jobs.cli.sweep resubmit $(SWEEP_ARGS) --cluster $(CLUSTER)$(RUNS_ARG)$(if $(DRY_RUN), --dry-run)

cancel: $(LOGIN_NEEDS)
	$(RUN_PY) -m jobs.cli.sweep cancel $(SWEEP_ARGS) --cluster $(CLUSTER)$(RUNS_ARG)

bench: setup
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_knn.py
	$(BIN)/python benchmarks/bench_curve.py --set 'eval.curve_steps=[0,78,156,234,312,390,468,546,624]'
	$(BIN)/python benchmarks/bench_report.py
	@if sinfo >/dev/null 2>&1; then $(BIN)/python benchmarks/bench_submit.py; \
	else echo "bench_submit: skipped, no Slurm cluster answers (make slurm-up)"; fi

# The smoke recipe that the method comparison and the demo run (docs/SMOKE_RECIPE.md): the smoke preset at patch 4,
# width 64, 2 heads, 2 epochs of 10,000 images (312 steps). The best k-NN measured, 1,248 steps at patch 8:
#   make quality QUALITY_SETS=train.epochs=8
QUALITY_SETS ?= model.patch_size=4 model.embed_dim=64 model.num_heads=2 train.epochs=2
quality: setup
	$(BIN)/python benchmarks/quality_fmnist.py $(addprefix --set ,$(QUALITY_SETS))

# One GPU, at most 6 minutes: bf16 and fp16 steps at the paper shape, CPU vs GPU, augmentation, resume, k-NN,
# the split pipeline's device-side photometric ops
# (benchmarks/results/gpu.md). Without a device it says so in one line and exits 0.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# The paper's claim at Fashion-MNIST scale: DINO alone, DINO + restoration, MST (random / attention-guided
# masking), 10 paired seeds of the fast smoke recipe (40 pre-trainings of 312 steps: about 2 h in this process,
# about 1 h with CLUSTER=local-slurm, 4 tasks at a time, where the Makefile waits for the sweep to finish), the
# same budget in every arm; the table with paired tests goes to benchmarks/results/method_smoke.md (primary
# test: docs/METHOD.md), the k-NN learning curves per arm to method_smoke_curve.png / .txt.
method: setup
	$(BIN)/mst-sweep submit method --budget smoke --cluster $(CLUSTER) --runs $(or $(RUNS),runs)
# on a scheduler, wait while a stage is queued or running (status exits 1 until all are done; a failed stage
# ends the wait, and the table names it)
ifneq ($(CLUSTER),local)
	until st=$$($(BIN)/mst-sweep status method --budget smoke --cluster $(CLUSTER) --runs $(or $(RUNS),runs)); do \
	  echo "$$st" | grep -qw failed && break; sleep 60; done
endif
	$(BIN)/mst-report tables --runs $(or $(RUNS),runs) --sweep method --budget smoke --test --format md > benchmarks/results/method_smoke.md.tmp
	mv benchmarks/results/method_smoke.md.tmp benchmarks/results/method_smoke.md
	$(BIN)/python benchmarks/method_context.py --sweep method_smoke --runs $(or $(RUNS),runs)
	$(BIN)/mst-report curve --runs $(or $(RUNS),runs) --sweep method --budget smoke --out benchmarks/results > benchmarks/results/method_smoke_curve.txt

# the example tables and plots, rendered again from the records committed in analysis/examples/runs (seconds)
examples: setup
	BIN=$(BIN) bash analysis/examples/regenerate.sh

# the same after running the covered sweeps at budget smoke into $(RUNS) (about 35 min on 2 cores)
examples-train: setup
	BIN=$(BIN) RUNS=$(or $(RUNS),runs) bash analysis/examples/regenerate.sh --train

lint: setup
	$(BIN)/ruff check mst jobs analysis tests benchmarks

clean:
	rm -rf $(or $(RUNS),runs) .pytest_cache
