# Two entry points on a fresh machine with Python 3.11+ and make:
#   make book   virtual environment + dependencies + the site in _build/html (warnings are errors)
#   make test   the same install, the browser the site test drives, the site, then the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: book test install browser exercises clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the pins or the package metadata change; repeat runs are fast.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going

# Debian's chromium (/usr/bin/chromium, the path tests/test_site.py uses), driven by playwright
# (never `playwright install`, which downloads a browser of its own).
browser:
	@[ -x /usr/bin/chromium ] || { \
	  echo "installing Debian's chromium for the site test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser book
	$(BIN)/python -m pytest

exercises: $(STAMP)
	$(BIN)/rlhf-course build-exercises

clean:
	rm -rf _build
