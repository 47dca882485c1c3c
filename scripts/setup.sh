#!/usr/bin/env bash
# Create .venv and install the project with pinned requirements. Idempotent and quick when
# nothing changed: a stamp records the hash of the files that decide what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.minivln-installed
# The message package is part of the install: its sources (msg/*.msg) and build files count too.
want=$(cat requirements.txt requirements-ros.txt requirements-ros-build.txt setup.py package.xml \
  minivln_interfaces/package.xml minivln_interfaces/CMakeLists.txt scripts/build_interfaces.sh msg/*.msg \
  | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements into .venv (first run takes a few minutes)"
  # torch is pinned to the local CPU wheel (2.13.0): plain `torch` would pull a CUDA build.
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-ros.txt \
    -r requirements-ros-build.txt 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
    | grep -v "^WARNING: Location" || true
  # Messages (msg/ -> minivln_interfaces) built with cmake into .venv from the PyPI ROS wheels (~20 s).
  scripts/build_interfaces.sh .venv
  .venv/bin/python -c "import torch, rclpy, minivln_core, minivln_interfaces.msg" # fail loudly if broken
  echo "$want" > "$stamp"
fi
