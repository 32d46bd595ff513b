# Assay: `make run` sets everything up and starts the web server and a worker; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: run install system frontend migrate demo worker web test test-fast lint bench bench-recon bench-governance bench-postprocess bench-jobs train-diffusion clean help

help:
	@echo "make run    set up (virtualenv, packages, database, demo data) and start the web server and a worker"
	@echo "make test   lint and run the whole test suite on PostgreSQL ($(TEST_DATABASE_URL))"
	@echo "make bench  API benchmark -> bench/results/api.json;  make bench-recon  reconstruction benchmark"

$(STAMP): requirements/base.txt requirements/dev.txt $(wildcard requirements/nodeps.txt) pyproject.toml deploy/install-system-packages.sh
	bash deploy/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements/dev.txt
	# Packages whose own pins conflict with ours (pyrender pins an old PyOpenGL and networkx); their needs are in base.txt.
	if [ -f requirements/nodeps.txt ]; then $(PIP) install --quiet --no-deps -r requirements/nodeps.txt; fi
	$(PIP) install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) frontend

system:
	bash deploy/install-system-packages.sh

frontend:
	bash deploy/install-frontend.sh

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

demo: migrate
	$(PY) manage.py load_demo --no-thumbnails
	$(PY) manage.py sync_models
	$(PY) manage.py render_thumbnails --missing

run: demo
	@bash deploy/run-local.sh "$(HOST)" "$(PORT)"

worker: install
	$(VENV)/bin/celery -A config worker -Q cpu,gpu -c 1 --loglevel INFO

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy reconstruction/engine

test: install
	$(VENV)/bin/ruff check .
	DATABASE_URL=$(TEST_DATABASE_URL) $(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install
	DATABASE_URL=$(TEST_DATABASE_URL) $(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) bench/api.py

bench-recon: install
	$(PY) bench/recon.py
	$(PY) bench/diffusion.py
	$(PY) bench/hybrid.py

bench-governance: install
	$(PY) bench/governance.py
	$(PY) bench/governance_gates.py

bench-postprocess: install
	$(PY) bench/postprocess.py

bench-jobs: install
	$(PY) bench/jobs.py

# The shipped occupancy-diffusion checkpoint, reproduced: data set (fixed seeds), training (fixed steps and seed),
# held-out evaluation, registration in reconstruction/engine/weights/ (about 75 minutes on two cores).
DIFFUSION_DATA := var/diffusion-data
DIFFUSION_TRAIN := $(PY) -m reconstruction.engine.generative dataset --count 9000 --seed 2 --out $(DIFFUSION_DATA)/train --workers 2
DIFFUSION_TEST := $(PY) -m reconstruction.engine.generative dataset --count 60 --seed 1001 --out $(DIFFUSION_DATA)/test --workers 1 --shard-size 60
DIFFUSION_STEPS ?= 3500

train-diffusion: install
	rm -rf $(DIFFUSION_DATA)/train $(DIFFUSION_DATA)/test
	$(DIFFUSION_TRAIN)
	$(DIFFUSION_TEST)
	$(PY) -m reconstruction.engine.generative train --data $(DIFFUSION_DATA)/train --steps $(DIFFUSION_STEPS) --batch 16 --seed 0 --out $(DIFFUSION_DATA)/occupancy-diffusion.pt
	$(PY) -m reconstruction.engine.generative evaluate --checkpoint $(DIFFUSION_DATA)/occupancy-diffusion.pt --data $(DIFFUSION_DATA)/test --out $(DIFFUSION_DATA)/metrics.json
	$(PY) -m reconstruction.engine.generative register --checkpoint $(DIFFUSION_DATA)/occupancy-diffusion.pt --metrics $(DIFFUSION_DATA)/metrics.json --data $(DIFFUSION_DATA)/train --version 1.0.0 --generation-command "$(DIFFUSION_TRAIN:$(PY)=python)"

clean:
	rm -rf $(VENV) var staticfiles node_modules build
