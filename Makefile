# The two set-up commands: `make run` (the portal) and `make test` (every test).
# Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench screenshots clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Loopback only unless told otherwise: .streamlit/config.toml sets server.address =
# 127.0.0.1; MFA_PORTAL_ADDRESS (or Streamlit's own --server.address /
# STREAMLIT_SERVER_ADDRESS) picks another. Demo mode shows its passwords on the
# sign-in page, so another address needs MFA_PORTAL_DEMO=0.
# MFA_PORTAL_PORT picks the port (Streamlit's --server.port; default 8501).
SERVE_ADDRESS = $(or $(MFA_PORTAL_ADDRESS),$(STREAMLIT_SERVER_ADDRESS))
run: $(STAMP)
	@case "$(SERVE_ADDRESS)" in ""|127.*|localhost|::1) ;; *) \
	  if [ "$(MFA_PORTAL_DEMO)" != "0" ]; then \
	    echo "make run: address $(SERVE_ADDRESS) serves other machines: turn demo mode off (MFA_PORTAL_DEMO=0) first" >&2; exit 2; \
	  fi ;; esac
	$(VENV)/bin/streamlit run app.py $(if $(MFA_PORTAL_ADDRESS),--server.address "$(MFA_PORTAL_ADDRESS)" --browser.serverAddress "$(MFA_PORTAL_ADDRESS)") $(if $(MFA_PORTAL_PORT),--server.port "$(MFA_PORTAL_PORT)")

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

screenshots: $(STAMP)
	MFA_PORTAL_UPDATE_DOCS=1 $(PY) -m pytest tests/browser

clean:
	rm -rf $(VENV) .pytest_cache
