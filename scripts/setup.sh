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
# The launch stack (ros2 launch, ros2 topic, ...) has no PyPI wheels: it comes from a folder of wheels
# built from the upstream sources when the machine has one (requirements-ros-launch.txt).
wheels=${MINIVLN_ROS2_WHEELS:-../shared/wheels/ros2-launch}
launch_stack=absent
[ -d "$wheels" ] && launch_stack=$(ls "$wheels"/*.whl 2>/dev/null | xargs -r -n1 basename | sort | tr '\n' ' ')
want=$( (cat requirements.txt requirements-ros.txt requirements-ros-build.txt requirements-ros-launch.txt \
  setup.py package.xml minivln_interfaces/package.xml minivln_interfaces/CMakeLists.txt \
  scripts/build_interfaces.sh msg/*.msg; echo "$launch_stack") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements into .venv (first run takes a few minutes)"
  # torch is pinned to the local CPU wheel (2.13.0): plain `torch` would pull a CUDA build.
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-ros.txt \
    -r requirements-ros-build.txt 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 \
    | grep -v "^WARNING: Location" || true
  if [ "$launch_stack" != absent ]; then
    echo "[setup] installing the ROS 2 launch stack (ros2 launch, ros2 topic, ...) from $wheels"
    .venv/bin/python -m pip install -q --disable-pip-version-check --find-links "$wheels" \
      -r requirements-ros-launch.txt 2>&1 | grep -v "^WARNING: Location" || true
  else
    echo "[setup] no $wheels: the ROS 2 launch stack is not installed (ros2 launch and the ros2 command" \
         "are unavailable here and their tests skip; a ROS 2 installation brings its own, or set" \
         "MINIVLN_ROS2_WHEELS to a folder of those wheels)"
  fi
  # Messages (msg/ -> minivln_interfaces) built with cmake into .venv from the PyPI ROS wheels (~20 s).
  scripts/build_interfaces.sh .venv
  .venv/bin/python -c "import torch, rclpy, minivln_core, minivln_interfaces.msg" # fail loudly if broken
  echo "$want" > "$stamp"
fi
# An editable install places no data files: link share/minivln_ros (launch, config, msg, checkpoints),
# lib/minivln_ros/<executable> and the ament index entry into .venv, file by file, every time (quick),
# so edits are live and files added to the checkout get installed (AMENT_PREFIX_PATH=$PWD/.venv).
.venv/bin/python scripts/link_prefix.py .venv > /dev/null
