# pobox — the two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
POBOX  := $(VENV)/bin/pobox
DATA   ?= ./data

# Debian packages the tests drive (real clients, and Dovecot as the side-by-side anchor).
TEST_DEBS := fetchmail getmail6 curl openssl iproute2 dovecot-imapd dovecot-pop3d dovecot-lmtpd isync offlineimap3 neomutt tmux swaks msmtp \
             chromium chromium-driver fonts-dejavu-core libnet-ssleay-perl libio-socket-ssl-perl

.PHONY: serve cli test test-fast lint fmt bench system-deps clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@if ! $(PYTHON) -m venv --help >/dev/null 2>&1 || ! $(PYTHON) -c 'import ensurepip' >/dev/null 2>&1; then \
	  echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; fi
	@[ -x $(PY) ] || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,dev]'
	@touch $@

serve: $(VENV)/.installed
	@$(POBOX) --data $(DATA) init --demo
	@echo "connect with: IMAP 127.0.0.1:1143  POP3 127.0.0.1:1110  SMTP 127.0.0.1:2525  LMTP 127.0.0.1:2424"
	@echo "              IMAPS 127.0.0.1:1993  POP3S 127.0.0.1:1995 (self-signed certificate in $(DATA)/tls)"
	@echo "              submission 127.0.0.1:2587 (STARTTLS, then AUTH)  127.0.0.1:2465 (implicit TLS)"
	@echo "              webmail https://127.0.0.1:8080 (the same certificate)"
	@echo "              account demo@localhost, password demo (if it was just created)"
	$(POBOX) --data $(DATA) serve

# the pobox command on the data directory of `make serve`: make cli ARGS="user list"
cli: $(VENV)/.installed
	@$(POBOX) --data $(DATA) $(ARGS)

system-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/ruff format --check src tests benchmarks tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed system-deps lint
	@# PostgreSQL for the store conformance suite and the two-node tests: found or started by the
	@# script; POBOX_REQUIRE_POSTGRES=1 makes those tests fail, never skip, without a server.
	pg="$$(scripts/ensure-postgres.sh)" && POBOX_TEST_PG="$$pg" POBOX_REQUIRE_POSTGRES=1 \
	  $(PY) -bb -m pytest -p no:cacheprovider

test-fast: $(VENV)/.installed
	$(PY) -bb -m pytest -p no:cacheprovider -m "not interop and not torture and not slow"

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests benchmarks tools
	$(VENV)/bin/ruff check --fix src tests benchmarks tools

bench: $(VENV)/.installed system-deps
	$(PY) benchmarks/lmtp_deliver.py
	$(PY) benchmarks/pop3_download.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
