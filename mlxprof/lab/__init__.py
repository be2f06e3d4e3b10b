"""The benchmark lab: models to profile, the benchmark, the roofline, stored results.

The lab uses the profiler (`mlxprof`) and the decode wing (`mlxprof.decode`);
neither of them imports the lab.

    models/     real-architecture synthetic models, SmolLM2, anything mlx_lm.load reads
    bench.py    `mlxprof bench`: interleaved rounds, same-round ratios, JSON/CSV
    roofline.py weight bytes per token against the memory-bandwidth bound
    opcount.py  ops per decode token of a model (shapes only), with GPU estimates
    results.py  the measurements kept in data/results/ (the GPU run notebooks quote)

Example:
    >>> from mlxprof.lab import models
    >>> "qwen3-8b" in models.NAMES
    True
"""
