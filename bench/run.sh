#!/usr/bin/env bash
# The benchmark, one command: installs what it needs, runs helo-smtp and Postfix side by side,
# writes bench/results/latest.json, docs/benchmarks.md and docs/benchmarks-*.png.
#   bash bench/run.sh                                   # the full run (~40 min on 2 cores)
#   bash bench/run.sh --rounds 1 --seconds 5 --iso-messages 5000 --queue-sizes 1000,100000
# Extra arguments go to `python -m bench` (see `python -m bench --help`).
# Needs root (Postfix runs from a private config directory; /etc/postfix and port 25 are never
# touched). All traffic stays on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's postfix brings smtp-sink and smtp-source; sasl2-bin has saslpasswd2 (the sasldb);
# libsasl2-modules has the PLAIN/LOGIN and sasldb plugins Postfix's smtpd loads.
bash tests/apt-install.sh postfix sasl2-bin libsasl2-modules

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[test,bench]"

exec .venv/bin/python -m bench --report --profile "$@"
