#!/usr/bin/env bash
# Build the message package minivln_interfaces (sources in msg/) with plain cmake and install it
# into the virtual environment, using the PyPI ROS 2 wheels (no ROS distribution, nothing to
# source afterwards). On a ROS 2 machine use colcon instead (see README).
#
# usage: scripts/build_interfaces.sh [VENV]   (default: .venv of the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "[interfaces] no virtual environment at $VENV (run scripts/setup.sh)" >&2; exit 1; }
# The ament/rosidl CMake modules run Python helpers: the venv must come first on PATH.
export PATH="$VENV/bin:$PATH"
started=$(date +%s)
# Workaround: the wheels' exported CMake targets hard-code the include paths of the manylinux
# build machine (/opt/python/cp311-cp311/...); point them at this interpreter's headers. Idempotent.
PYINC=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$PY" -c "import numpy; print(numpy.get_include())")
{ grep -rl /opt/python/cp311-cp311 "$VENV"/share/*/cmake 2>/dev/null || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
BUILD=build/minivln_interfaces
mkdir -p "$BUILD"
cmake -S minivln_interfaces -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$BUILD.log" 2>&1 \
  || { tail -n 40 "$BUILD.log" >&2; echo "[interfaces] cmake configure failed (log: $BUILD.log)" >&2; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >> "$BUILD.log" 2>&1 \
  || { tail -n 40 "$BUILD.log" >&2; echo "[interfaces] build failed (log: $BUILD.log)" >&2; exit 1; }
cmake --install "$BUILD" >> "$BUILD.log" 2>&1 \
  || { tail -n 40 "$BUILD.log" >&2; echo "[interfaces] install failed (log: $BUILD.log)" >&2; exit 1; }
"$PY" -c "from minivln_interfaces.msg import NavigatorStatus, EpisodeResult"
echo "[interfaces] built and installed minivln_interfaces into $VENV in $(( $(date +%s) - started )) s"
