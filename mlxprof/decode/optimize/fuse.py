"""Fused projections: several linear layers that read one input as one matmul.

A quantized weight (affine, as `mx.quantize` makes it) is stored row by row:
each output row has its own packed words, scales and biases, and the
quantization groups run along the *input* dimension. So rows of several
`QuantizedLinear` layers with the same input, bits, group size and mode can
be concatenated (or permuted) into one weight, and one `quantized_matmul`
gives exactly the concatenated outputs. The same holds for the expert
tensors of a `SwitchLinear` (rows are axis 1; experts are axis 0).

Nothing here changes its inputs: a single layer is shared as is (no copy);
a fusion builds new arrays once.

Example:
    >>> import mlx.core as mx, mlx.nn as nn
    >>> a, b = nn.QuantizedLinear(64, 64, bias=False), nn.QuantizedLinear(64, 32, bias=False)
    >>> p = fuse_linears([a, b])
    >>> x = mx.ones((1, 64))
    >>> bool(mx.array_equal(p(x), mx.concatenate([a(x), b(x)], -1)))
    True
"""
from __future__ import annotations

from typing import Optional, Sequence

import mlx.core as mx
import mlx.nn as nn

from mlxprof.decode.kernels import cuda_qmv

__all__ = ["Proj", "SwitchProj", "fuse_linears", "fuse_switch", "can_fuse"]


def _qspec(m) -> Optional[tuple]:
    """(group_size, bits, mode) of a quantized layer, None for a float one."""
    if isinstance(m, (Proj, SwitchProj)):
        return m.qspec
    if "scales" in m:
        if m.get("global_scale") is not None:
            raise TypeError("layers with a global scale (nvfp4) are not fused")
        return (m.group_size, m.bits, getattr(m, "mode", "affine"))
    return None


class Proj(nn.Module):
    """y = x @ W.T (+ bias), W quantized or not; the rows of one or more layers.

    Example:
        >>> p = fuse_linears([nn.Linear(8, 4, bias=False)])
        >>> p(mx.ones((1, 8))).shape
        (1, 4)
    """

    def __init__(self, weight, scales=None, biases=None, bias=None,
                 qspec: Optional[tuple] = None):
        super().__init__()
        self.weight = weight
        if scales is not None:
            self.scales = scales
            if biases is not None:
                self.biases = biases
        if bias is not None:
            self.bias = bias
        self.qspec = qspec
        self.cuda_qmv = False       # one-row products by cuda_qmv (set by build)
        self.freeze()

    @property
    def output_dims(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x):
        if self.cuda_qmv and x.size == x.shape[-1] and x.dtype == self["scales"].dtype:
            y = cuda_qmv.qmv(x, self["weight"], self["scales"], self["biases"],
                             self.qspec[0])
        elif self.qspec is not None:
            gs, bits, mode = self.qspec
            y = mx.quantized_matmul(x, self["weight"], self["scales"],
                                    self.get("biases"), transpose=True,
                                    group_size=gs, bits=bits, mode=mode)
        else:
            y = x @ self["weight"].T
        if "bias" in self:
            y = y + self["bias"]
        return y


def can_fuse(layers: Sequence) -> bool:
    """True when `layers` share input dims, quantization and bias presence."""
    try:
        specs = {_qspec(m) for m in layers}
    except TypeError:
        return False
    if len(specs) != 1:
        return False
    ins = {(m.scales.shape[-1] if "scales" in m else m.weight.shape[-1])
           for m in layers}
    return len(ins) == 1


def _cat(arrs, axis=0):
    return arrs[0] if len(arrs) == 1 else mx.concatenate(arrs, axis=axis)


def fuse_linears(layers: Sequence, rows: Optional[mx.array] = None) -> Proj:
    """One Proj computing the concatenated outputs of `layers` (in order).

    `rows`, if given, then reorders the output rows (an index array). A single
    layer without `rows` shares its arrays; anything else builds new ones.
    Raises ValueError if the layers cannot be fused (see can_fuse).
    """
    layers = list(layers)
    if not can_fuse(layers):
        raise ValueError("layers differ in quantization or input size")
    qspec = _qspec(layers[0])
    names = ["weight"] + (["scales"] if qspec else [])
    if qspec and all(m.get("biases") is not None for m in layers):
        names.append("biases")
    parts = {n: _cat([m[n] for m in layers]) for n in names}
    if any("bias" in m for m in layers):
        parts["bias"] = _cat([m["bias"] if "bias" in m else
                              mx.zeros((m.weight.shape[0],), m.weight.dtype
                                       if not qspec else m.scales.dtype)
                              for m in layers])
    if rows is not None:
        parts = {n: mx.take(a, rows, axis=0) for n, a in parts.items()}
    p = Proj(parts["weight"], parts.get("scales"), parts.get("biases"),
             parts.get("bias"), qspec)
    if len(layers) > 1 or rows is not None:
        mx.eval(p.parameters())
    return p


class SwitchProj(nn.Module):
    """Expert projections y[e] = x @ W[e].T for gathered experts (gather_qmm).

    Example:
        >>> from mlx_lm.models.switch_layers import SwitchLinear
        >>> s = fuse_switch([SwitchLinear(8, 4, 3, bias=False)])
        >>> s(mx.ones((1, 1, 1, 1, 8)), mx.array([[[0, 2]]])).shape
        (1, 1, 2, 1, 4)
    """

    def __init__(self, weight, scales=None, biases=None, qspec=None):
        super().__init__()
        self.weight = weight
        if scales is not None:
            self.scales = scales
            if biases is not None:
                self.biases = biases
        self.qspec = qspec
        self.freeze()

    def __call__(self, x, indices, sorted_indices: bool = False, lhs_indices=None):
        if self.qspec is not None:
            gs, bits, mode = self.qspec
            return mx.gather_qmm(x, self["weight"], self["scales"],
                                 self.get("biases"), lhs_indices=lhs_indices,
                                 rhs_indices=indices, transpose=True,
                                 group_size=gs, bits=bits, mode=mode,
                                 sorted_indices=sorted_indices)
        return mx.gather_mm(x, self["weight"].swapaxes(-1, -2),
                            lhs_indices=lhs_indices, rhs_indices=indices,
                            sorted_indices=sorted_indices)


def fuse_switch(layers: Sequence, extra: Sequence = ()) -> SwitchProj:
    """One SwitchProj: the output rows of `layers` concatenated (axis 1).

    `extra` (optional) is one dense layer per entry of `layers`, with the same
    quantization, appended as one more expert (index = number of experts):
    the shared expert of Qwen3.5 MoE, when its width equals the experts'.
    Layers with a bias are not supported (ValueError).
    """
    layers, extra = list(layers), list(extra)
    if any("bias" in m for m in layers + extra):
        raise ValueError("switch layers with a bias are not fused")
    if not can_fuse(layers + extra):
        raise ValueError("switch layers differ in quantization or input size")
    qspec = _qspec(layers[0])
    names = ["weight"] + (["scales"] if qspec else [])
    if qspec and all(m.get("biases") is not None for m in layers + extra):
        names.append("biases")
    parts = {}
    for n in names:
        a = _cat([m[n] for m in layers], axis=1)
        if extra:
            e = _cat([m[n] for m in extra], axis=0)[None]
            a = mx.concatenate([a, e], axis=0)
        parts[n] = a
    p = SwitchProj(parts["weight"], parts.get("scales"), parts.get("biases"),
                   qspec)
    if len(layers) > 1 or extra:
        mx.eval(p.parameters())
    return p
