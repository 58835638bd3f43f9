#!/usr/bin/env bash
# Installs Debian's chromium when it is missing, for the health report's
# rendering test (report: TestRenderChromium). Needs root and Debian's
# mirror, nothing else; safe to run again. Prints the binary's path.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "chromium is missing and installing it needs root: apt-get install -y chromium" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
command -v chromium
