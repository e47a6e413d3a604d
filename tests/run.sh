#!/usr/bin/env bash
# Install everything the test suite needs from this repo's own files, then run it.
#   bash tests/run.sh            # the whole suite, in parallel, then the submission and
#                                # delivery suites again with the store on PostgreSQL
#   bash tests/run.sh tests/cli  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the suite talks to: swaks and curl (clients no one here wrote, with TLS), Postfix
# (its smtp-sink/smtp-source, and as a SASL relay/smarthost client: sasl2-bin,
# libsasl2-modules), PostgreSQL for the multi-node store tests, nmap's open-relay probe, systemd's
# tools for the unit-file tests, Node.js for nodemailer. Installed when we can (root + apt); a
# test whose tool is missing skips on a laptop and fails the run in CI (tests/support/noskip.py).
bash tests/apt-install.sh swaks libnet-ssleay-perl curl postfix sasl2-bin libsasl2-modules \
  postgresql nmap systemd
# Node from any source will do (NodeSource's nodejs ships npm, Debian's has it apart).
command -v npm >/dev/null 2>&1 || bash tests/apt-install.sh nodejs npm

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,postgres]"

# nodemailer, another client no one here wrote (pinned by tests/clients/node/package-lock.json).
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --silent --prefix tests/clients/node >/dev/null
fi

# The per-test timeout and the CI rule (no skip but chaos) are in pyproject.toml's pytest
# options, so they hold for any pytest run, not only this script's.

.venv/bin/python -m pytest -n auto "$@"

# The submission, end-to-end and broadcast suites once more with the store on PostgreSQL (the
# backend several relay nodes share); tests of SQLite internals are marked sqlite_only.
# tests/outbound is not repeated: its tests take both backends as a parameter
# (tests/outbound/conftest.py). Only for a whole-suite run: a run of chosen test paths stops
# above.
for arg in "$@"; do
  case "$arg" in tests*|*.py*) exit 0 ;; esac
done
HELO_TEST_BACKEND=postgresql .venv/bin/python -m pytest -n auto "$@" \
  tests/inbound tests/e2e tests/broadcast
