#!/usr/bin/env bash
# The alert rules checked and unit-tested with promtool (Debian: apt-get
# install -y prometheus). Fails if promtool is missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing: apt-get install -y prometheus" >&2
  exit 1
fi
promtool --version | head -n 1
promtool check rules rules.yaml
promtool test rules tests/*.yaml
