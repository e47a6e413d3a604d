#!/usr/bin/env bash
# Install the Debian packages named as arguments that are not installed yet (root + apt only).
# Used by tests/run.sh and bench/run.sh. Postfix's installer is told "No configuration", so it
# never sets up or starts the system's own mail system. Where it cannot install, the tests that
# need a package skip, except in CI, where this fails: in CI every test runs (the rule reads $CI
# as tests/support/noskip.py does: set and not "", 0, false or no).
set -euo pipefail
missing=""
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -n "$missing" ] || exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "not installed (needs root and apt):$missing" >&2
  case "$(echo "${CI:-}" | tr '[:upper:]' '[:lower:]' | tr -d '[:space:]')" in
    ""|0|false|no) exit 0 ;;
    *) echo "CI runs every test: install them first" >&2; exit 1 ;;
  esac
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq >/dev/null
# shellcheck disable=SC2086 - one word per package
apt-get install -y -qq --no-install-recommends $missing >/dev/null
