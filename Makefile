# Two commands do all set-up on a fresh machine:
#   make demo   a local Label Studio, the evaluation project, sample conversations
#               synced, the daemon and the chatbot running, the URL printed
#   make test   everything the tests need, then the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages label-studio test demo bench lint

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[chatbot,dev,ner,postgres]'
	touch $@

install: $(BIN)/.installed

# Debian packages the tests drive: Chromium for the browser tests (Playwright
# cannot download browsers here), systemd's tools (systemd-analyze checks
# the units) and PostgreSQL's server (the suite starts its own cluster on
# loopback as the `postgres` user). Installed only when a command is missing.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# Label Studio lives in its own cached virtualenv (its pins never meet ours).
label-studio: install
	$(BIN)/python -m tests.support.labelstudio install

test: install system-packages label-studio
	$(BIN)/python -m pytest

demo: install label-studio
	$(BIN)/python -m tests.support.demo

bench: install label-studio
	$(BIN)/python -m tests.bench

lint: install
	$(BIN)/ruff check daemon chatbot tests
	$(BIN)/mypy daemon chatbot
