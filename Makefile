# The two commands a newcomer types: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian/Ubuntu packages are installed with sudo unless we are root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench clean system-deps test-deps

# python3-venv is a separate package on Debian and Ubuntu.
system-deps:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "installing python3-venv"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }

# The integration tests drive the server with sipp (Debian: sip-tester).
# The PLC tests speak with espeak-ng and resample with sox; the pesq
# package builds from source (a C compiler and Python's headers). The ban
# tests program nftables (nft).
test-deps: system-deps
	@need=""; \
	command -v sipp >/dev/null 2>&1 || need="$$need sip-tester"; \
	command -v espeak-ng >/dev/null 2>&1 || need="$$need espeak-ng"; \
	command -v sox >/dev/null 2>&1 || need="$$need sox"; \
	command -v nft >/dev/null 2>&1 || need="$$need nftables"; \
	command -v gcc >/dev/null 2>&1 || need="$$need gcc"; \
	command -v rtpengine >/dev/null 2>&1 || need="$$need rtpengine-daemon"; \
	$(PYTHON) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		2>/dev/null || need="$$need python3-dev"; \
	if [ -n "$$need" ]; then echo "installing$$need"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$need; fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/softswitch run --config conf/softswitch.yaml --data-dir data

test: test-deps $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check softswitch dialplan rtpmedia tests bench
	$(BIN)/mypy softswitch dialplan

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis
