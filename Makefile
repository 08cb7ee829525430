# Two commands on a fresh machine (see README.md):
#   make run    create .venv, install the trainer, run the main job on the built-in defaults
#   make test   create .venv if needed, install everything, run the test suite
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch; set TORCH_SPEC="torch" (or a CUDA wheel) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
TORCH_STAMP := $(VENV)/.installed-torch
TRAIN_STAMP := $(VENV)/.installed-train
STAMP := $(VENV)/.installed

.PHONY: run test install browser clean

$(TORCH_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	# Keep the torch just installed: a plain `torch` requirement could pull a CUDA build of several GB.
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	touch $@

# What the main job needs (the `train` extra); the tests need every extra.
$(TRAIN_STAMP): $(TORCH_STAMP)
	$(PY) -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[train]"
	touch $@

$(STAMP): $(TRAIN_STAMP)
	$(PY) -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[all]"
	touch $@

install: $(STAMP)

# The main job: MGPO from the free-form miniature's committed base checkpoint (minutes on 2 cores);
# it ends with a before -> after table and the paths of the HTML report and the curves.
run: $(TRAIN_STAMP)
	rm -rf outputs/train
	$(VENV)/bin/mgpo train --preset freeform --output outputs/train

test: $(STAMP)
	$(PY) -m pytest -q

# Debian's chromium and chromedriver for the browser tests (pytest -m browser); needs apt (root or sudo).
browser: $(STAMP)
	.ci/install_browser.sh $(VENV)

clean:
	rm -rf $(VENV) outputs
