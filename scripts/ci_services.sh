#!/usr/bin/env bash
# Debian packages the integration tests run for real (`make test-integration`, called by .ci/run):
# PostgreSQL (Dagster storage + MLflow tracking/registry), Redis (Celery broker) and Chromium
# (the UI in a headless browser, driven over the DevTools protocol: no browser download).
# Idempotent: installs only what is missing, with one `apt-get update`. Nothing is started here;
# the tests start their own servers in temp folders on loopback and stop them.
set -euo pipefail

missing=()
have_initdb() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_initdb || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fc-list 2>/dev/null | grep -qi liberation || missing+=(fonts-liberation)

if [ ${#missing[@]} -eq 0 ]; then
  echo "ci_services: postgresql, redis-server and chromium present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ci_services: missing ${missing[*]} and not root: the integration tests that need them will skip" >&2
  exit 0
fi
echo "ci_services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: the packages must not start system-wide servers; the tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ci_services: installed ${missing[*]}"
