#!/usr/bin/env bash
# Prints the commands in README.md's "Quick start" code block, one per line, so CI
# runs exactly what a newcomer would paste (and the README cannot drift from CI).
set -euo pipefail
awk '
  /^## Quick start/ { inside = 1; next }
  inside && /^## / { exit }
  inside && /^```/ { fenced = !fenced; next }
  inside && fenced && $0 !~ /^[[:space:]]*(#|$)/ { print }
' "${1:-README.md}"
