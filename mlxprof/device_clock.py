"""The GPU's own clock on MLX's CUDA backend: how long the device takes.

Host timers see when `mx.eval` returns, not how long the GPU computed: the
host may be late (the GPU idles) or early (`async_eval` throttles it once
ten command buffers are in flight). Two tiny custom kernels read the GPU's
global timer (`%globaltimer`, nanoseconds) instead:

* `stamp(x) -> (x', t)`: x' is a copy of x, t the time the GPU got there
  (the kernel runs after x's producers, and what uses x' runs after it);
* `hold(x, ms) -> x'`: the GPU spins for `ms`, then copies x.

`device_ms(fn, *inputs)` holds the GPU while the host encodes all of
`fn(*inputs)`, then stamps before and after: the time the device needs for
fn with the host never late. Encode must fit in the hold and in fewer than
MLX's ten in-flight command buffers: run it with `MLX_MAX_OPS_PER_BUFFER`
raised (e.g. 1000, set before MLX starts); the result says whether the
encode fit (`encode_ms < hold_ms`).

Example (CUDA only; elsewhere `available()` is False):
    >>> import mlx.core as mx
    >>> available() == (mx.default_device() == mx.gpu and mx.cuda.is_available())
    True
    >>> # r = device_ms(lambda a: a @ a, mx.ones((4096, 4096))); r.device_ms
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import mlx.core as mx

__all__ = ["available", "stamp", "hold", "device_ms", "DeviceTime"]

_NOW = "unsigned long long now; asm volatile(\"mov.u64 %0, %%globaltimer;\" : \"=l\"(now));"

_STAMP = """
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i == 0) { """ + _NOW + """ t[0] = now; }
    if (i < SIZE) y[i] = x[i];
"""

_HOLD = """
    if (threadIdx.x == 0) {
        unsigned long long start; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
        while (true) {
            """ + _NOW + """
            if (now - start >= (unsigned long long)NS) break;
        }
    }
    __syncthreads();
    for (size_t i = threadIdx.x; i < SIZE; i += blockDim.x) y[i] = x[i];
"""


def available() -> bool:
    """True on MLX's CUDA backend (the only one these kernels run on)."""
    return mx.default_device() == mx.gpu and mx.cuda.is_available()


@lru_cache(maxsize=None)
def _kernel(kind: str):
    src, names = {"stamp": (_STAMP, ["y", "t"]), "hold": (_HOLD, ["y"])}[kind]
    return mx.fast.cuda_kernel(name=f"mlxprof_clock_{kind}", input_names=["x"],
                               output_names=names, source=src)


def _launch(kind, x, template=()):
    block = 256 if kind == "stamp" else 1024
    blocks = max(1, -(-x.size // block)) if kind == "stamp" else 1
    shapes = [x.shape] + ([(1,)] if kind == "stamp" else [])
    dtypes = [x.dtype] + ([mx.uint64] if kind == "stamp" else [])
    return _kernel(kind)(inputs=[x], template=[("SIZE", x.size), *template],
                         grid=(block * blocks, 1, 1),
                         threadgroup=(block, 1, 1), output_shapes=shapes,
                         output_dtypes=dtypes)


def stamp(x: mx.array):
    """(copy of x, uint64 array [GPU time in ns when x was ready]). CUDA only."""
    y, t = _launch("stamp", x)
    return y, t


def hold(x: mx.array, ms: float) -> mx.array:
    """A copy of x made (by one block) after the GPU spun for `ms`. CUDA only."""
    (y,) = _launch("hold", x, [("NS", int(ms * 1e6))])
    return y


@dataclass
class DeviceTime:
    """device_ms: GPU time from the first input ready to all outputs ready;
    encode_ms: host time of async_eval (must be < hold_ms for a clean
    reading: else the host fed the GPU late); hold_ms: the hold used;
    outputs: what fn returned (evaluated)."""
    device_ms: float
    encode_ms: float
    hold_ms: float
    outputs: list = field(default_factory=list, repr=False)

    @property
    def clean(self) -> bool:
        return self.encode_ms < 0.8 * self.hold_ms


def device_ms(fn, *inputs: mx.array, hold_ms: float = 50.0) -> DeviceTime:
    """GPU time of fn(*inputs) (returns an array or a list/tuple of them).

    Inputs should be small (token ids, a hidden vector: one block copies
    them after the hold); fn may update state (a KV cache) as a model call does.
    """
    if not available():
        raise RuntimeError("device_ms needs MLX's CUDA backend (mx.cuda.is_available() "
                           "and the GPU as default device)")
    mx.eval(*inputs)
    mx.synchronize()
    starts = [stamp(hold(x, hold_ms)) for x in inputs]
    outs = fn(*[y for y, _ in starts])
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    ends = [stamp(o) for o in outs]
    stamps = [t for _, t in starts] + [t for _, t in ends]
    t0 = time.perf_counter()
    mx.async_eval([y for y, _ in ends] + stamps)
    encode = (time.perf_counter() - t0) * 1e3
    mx.eval(stamps, outs)
    begin = min(int(t.item()) for _, t in starts)
    end = max(int(t.item()) for _, t in ends)
    return DeviceTime((end - begin) / 1e6, encode, hold_ms, outs)
