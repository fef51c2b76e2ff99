#!/usr/bin/env bash
# Install the browser the web-app end-to-end tests drive (tests/ui/test_browser.py): Debian's
# Chromium and ChromeDriver, plus a font so screenshots have text. Non-interactive and idempotent.
# Playwright's Python package comes from requirements/dev.txt; it never downloads a browser of its
# own: the tests pass /usr/bin/chromium as executable_path.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-browser: need root (or password-less sudo) for apt-get" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null
echo "installed: $(chromium --version 2>/dev/null || echo chromium)"
