"""`python -m mlxprof ...` runs the `mlxprof` command (see mlxprof.cli)."""
import sys

from mlxprof.cli import main

sys.exit(main())
