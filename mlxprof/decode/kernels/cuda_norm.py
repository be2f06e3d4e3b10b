"""Residual add + RMSNorm in one custom CUDA kernel, and the ops fallback.

Every decoder layer adds a sublayer's output to the residual stream and
normalizes the sum for the next sublayer: `h = x + r; n = rms_norm(h, w)`,
two kernels at one token. `add_norm(x, r, w, eps)` returns both (h, n):
one kernel on a CUDA GPU (`cuda=True`), MLX ops otherwise. The kernel
rounds as MLX's ops do (the add in the activations' dtype; RMSNorm's
`w * T(x * rsqrt(mean(x^2) + eps))`), so only the order of the float32 sum
of squares can differ. `self_check()` compares both on random data.

Example:
    >>> import mlx.core as mx
    >>> x = mx.ones((1, 1, 8)); w = mx.ones((8,))
    >>> h, n = add_norm(x, x, w, 1e-6)
    >>> h.tolist()[0][0][0], round(n.tolist()[0][0][0], 3)
    (2.0, 1.0)
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["add_norm", "eps_array", "norm_block", "self_check"]

# one block per row; the sum of squares in float32 over the block
_SOURCE = """
    __shared__ float s_red[BLOCK / 32];
    const int row = blockIdx.x;
    const int tid = threadIdx.x;
    const size_t base = (size_t)row * D;
    float ss = 0.0f;
    for (int d = tid; d < D; d += BLOCK) {
        const float v = static_cast<float>(static_cast<OutT>(
            __fadd_rn(static_cast<float>(x[base + d]), static_cast<float>(r[base + d]))));
        h[base + d] = static_cast<OutT>(v);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    mlxprof_rms_tail<OutT, BLOCK, D>(ss, h + base, w, n + base, eps[0], s_red);
"""


def norm_block(d: int) -> int:
    """Threads per row for a row of d numbers (a multiple of 32, <= 1024)."""
    return min(1024, 32 * -(-d // 32))


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_add_norm", input_names=["x", "r", "w", "eps"],
        output_names=["h", "n"], source=_SOURCE, header=HEADER)


@lru_cache(maxsize=None)
def eps_array(eps: float) -> mx.array:
    """eps as an evaluated float32 array of shape (1,), the kernels' input.
    Built once per value: call it before mx.compile traces a kernel call."""
    a = mx.array([eps], mx.float32)
    mx.eval(a)
    return a


def add_norm(x, r, w, eps: float, cuda: bool = False):
    """(x + r, rms_norm(x + r, w, eps)); one CUDA kernel when `cuda`.

    x, r (..., D) of one dtype, w (D,). Call with cuda=True only on a CUDA
    device, outside mx.compile tracing the first time for each eps (the eps
    constant is built and evaluated once).
    """
    if not cuda:
        h = x + r
        return h, mx.fast.rms_norm(h, w, eps)
    D = x.shape[-1]
    rows = x.size // D
    block = norm_block(D)
    h, n = _kernel()(
        inputs=[x, r, w, eps_array(float(eps))],
        template=[("OutT", x.dtype), ("D", D), ("BLOCK", block)],
        grid=(block * rows, 1, 1), threadgroup=(block, 1, 1),
        output_shapes=[x.shape, x.shape], output_dtypes=[x.dtype, x.dtype])
    return h, n


def self_check(dim: int, eps: float) -> float:
    """Max relative difference of the kernel vs the ops on random bf16 data."""
    return self_checked("add_norm", (dim, eps), lambda: _check(dim, eps))


def _check(dim: int, eps: float) -> float:
    ks = mx.random.split(mx.random.key(3), 3)
    dt = mx.bfloat16
    x = mx.random.normal((2, 1, dim), key=ks[0]).astype(dt)
    r = mx.random.normal((2, 1, dim), key=ks[1]).astype(dt)
    w = (1 + 0.1 * mx.random.normal((dim,), key=ks[2])).astype(dt)
    ref, got = add_norm(x, r, w, eps), add_norm(x, r, w, eps, cuda=True)
    return max(rel_diff(g, f) for g, f in zip(got, ref))
