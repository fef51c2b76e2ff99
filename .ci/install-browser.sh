#!/usr/bin/env bash
# Install the browser the web-app end-to-end tests drive (tests/ui/test_browser.py): Debian's
# Chromium and ChromeDriver, plus a font so screenshots have text. Non-interactive and idempotent.
# Playwright's Python package comes from requirements/dev.txt; it never downloads a browser of its
# own: the tests pass /usr/bin/chromium as executable_path.
set -euo pipefail
"$(dirname "$0")/apt-install.sh" chromium chromium-driver fonts-dejavu-core
