# Spotless: `make run` starts the whole stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test install lint bench-spatial clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/spotless dev

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

# The admin's browser tests drive Debian's Chromium (tests/admin/browser); Playwright never
# downloads one. Installed only when missing, and only by root; otherwise those tests say why.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "make: $(CHROMIUM) is missing; install Debian's chromium as root for the browser tests" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check core storage actors edge jobs admin cli tests bench
	$(BIN)/mypy core storage

clean:
	rm -rf $(VENV) .spotless .pytest_cache
