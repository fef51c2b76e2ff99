#!/usr/bin/env bash
# Install what the napari plugin's viewer tests (tests/plugin/) need besides the project's Python
# extras: a virtual X display (Xvfb; napari's canvas needs OpenGL, which Qt's offscreen platform
# lacks, and Mesa renders it in software) and the X libraries of Qt's xcb platform plugin.
# Non-interactive and idempotent.
set -euo pipefail
"$(dirname "$0")/apt-install.sh" xvfb xauth libgl1-mesa-dri libegl1 libfontconfig1 libdbus-1-3 \
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
  libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxcb-shape0 fonts-dejavu-core
