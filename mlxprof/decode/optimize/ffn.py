"""Feed-forward blocks with fused projections: dense SwiGLU MLP and MoE.

`MLP`:  gate_proj + up_proj -> one matmul, then swiglu, then down_proj (at
        one row with a cuda_qmv gate_up: one kernel, cuda_qmv.qmv_swiglu).
`MoE`:  router gate (+ Qwen3.5's shared_expert_gate, both 8-bit) -> one
        matmul; the experts' gate + up -> one gather_qmm; optionally the
        shared expert becomes expert number E of the switch weights (when it
        has the experts' width), so it rides in the same two gather_qmm calls.

The math (dtypes, order of operations) follows mlx-lm's Qwen3NextMLP /
SwitchGLU / Qwen3NextSparseMoeBlock / Qwen3MoeSparseMoeBlock.

Example:
    >>> from mlx_lm.models.qwen3 import MLP as Ref
    >>> ref = Ref(64, 128); m = MLP.from_mlx_lm(ref)
    >>> x = mx.ones((1, 1, 64))
    >>> bool(mx.allclose(m(x), ref(x), atol=1e-5))
    True
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlxprof.decode.kernels.cuda_common import on_cuda
from mlxprof.decode.kernels import cuda_experts, cuda_moe, cuda_qmv
from mlxprof.decode.kernels.cuda_norm import add_norm, eps_array
from .fuse import Proj, SwitchProj, fuse_linears, fuse_switch

__all__ = ["MLP", "MoE", "swiglu", "quantized", "ROUTERS", "COMBINES"]

ROUTERS = ("exact", "topk_softmax", "cuda")
COMBINES = ("exact", "matmul", "cuda")


def swiglu(gate, up):
    """silu(gate) * up, as mlx-lm's activations.swiglu."""
    return nn.silu(gate) * up


class MLP(nn.Module):
    """down(swiglu(gate(x), up(x))) with gate and up in one matmul."""

    def __init__(self, gate_up, down, hidden: int):
        super().__init__()
        self.gate_up, self.down, self.hidden = gate_up, down, hidden

    @classmethod
    def from_mlx_lm(cls, mlp, fuse: bool = True) -> "MLP":
        if fuse:
            gu = fuse_linears([mlp.gate_proj, mlp.up_proj])
        else:
            gu = _Pair(fuse_linears([mlp.gate_proj]), fuse_linears([mlp.up_proj]))
        hidden = (mlp.gate_proj.weight.shape[0])
        return cls(gu, fuse_linears([mlp.down_proj]), hidden)

    def __call__(self, x):
        gu = self.gate_up
        if self.fused_swiglu(x):
            return self.down(cuda_qmv.qmv_swiglu(x, gu["weight"], gu["scales"],
                                                 gu["biases"], gu.qspec[0]))
        return self.down(swiglu(*mx.split(gu(x), [self.hidden], axis=-1)))

    def fused_swiglu(self, x) -> bool:
        """True when gate_up + swiglu run as one cuda_qmv.qmv_swiglu: one row
        x, gate_up a Proj marked cuda_qmv (by build) without a bias."""
        gu = self.gate_up
        return (isinstance(gu, Proj) and gu.cuda_qmv and "bias" not in gu
                and x.size == x.shape[-1] and x.dtype == gu["scales"].dtype)

    def add_to(self, h, x):
        """h + self(x) (the layer's residual add)."""
        return h + self(x)

    def add_norm_to(self, h, x, w, eps: float, cuda: bool = False):
        """(h + self(x), rms_norm(h + self(x), w, eps)); see cuda_norm.add_norm."""
        return add_norm(h, self(x), w, eps, cuda)


class _Pair(nn.Module):
    """Two projections of one input, outputs concatenated (unfused baseline)."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def __call__(self, x, *args, **kw):
        return mx.concatenate([self.a(x, *args, **kw), self.b(x, *args, **kw)], -1)


def quantized(p) -> tuple:
    """(weight, scales, biases) of a quantized Proj or SwitchProj."""
    return p["weight"], p["scales"], p["biases"]


def _gather_sort(x, indices):
    *_, m = indices.shape
    indices = indices.flatten()
    order = mx.argsort(indices)
    inv_order = mx.argsort(order)
    return x.flatten(0, -3)[order // m], indices[order], inv_order


class MoE(nn.Module):
    """Top-k routed SwiGLU experts (+ optional sigmoid-gated shared expert)."""

    def __init__(self, blk, fuse_router: bool = True, fuse_experts: bool = True,
                 shared_in_switch: bool = False, router: str = "exact",
                 combine: str = "exact", fuse_gate_up: bool = True):
        super().__init__()
        if router not in ROUTERS or combine not in COMBINES:
            raise ValueError(f"bad router/combine {router!r}/{combine!r}")
        if "cuda" in (router, combine):
            if not on_cuda():
                raise ValueError(
                    f"router/combine='cuda' needs MLX's CUDA backend (default device: "
                    f"{mx.default_device()}); use 'auto' or 'exact'")
        sw = blk.switch_mlp
        self.num_experts = blk.num_experts
        self.top_k = blk.top_k
        self.norm_topk_prob = bool(getattr(blk, "norm_topk_prob", False))
        # softmax over the top-k logits == renormalized top-k probabilities
        self.router_mode = router if router == "cuda" or self.norm_topk_prob \
            else "exact"
        self.combine = combine
        # gather_qmm's lhs_indices at B*L == 1, as constants (else each call
        # builds arange/reshape/broadcast): x is shared by the k experts for
        # gate/up; row i of the activations goes to expert i for down.
        kk = self.top_k + 1
        self._lhs_up = mx.zeros((1, 1, 1), mx.uint32)
        self._lhs_down = [mx.arange(n, dtype=mx.uint32).reshape(1, 1, n)
                          for n in (kk - 1, kk)]
        self._shared_idx = mx.full((1, 1, 1), blk.num_experts, mx.uint32)
        mx.eval(self._lhs_up, self._lhs_down, self._shared_idx)
        self.hidden = sw.gate_proj.weight.shape[1]
        shared = getattr(blk, "shared_expert", None)
        self.has_shared = shared is not None
        if self.has_shared and fuse_router:
            try:
                self.router = fuse_linears([blk.gate, blk.shared_expert_gate])
                self.shared_gate = None
            except ValueError:
                fuse_router = False
        if not (self.has_shared and fuse_router):
            self.router = fuse_linears([blk.gate])
            self.shared_gate = (fuse_linears([blk.shared_expert_gate])
                                if self.has_shared else None)
        self.router_fused = self.has_shared and fuse_router
        self.shared_in_switch = bool(
            shared_in_switch and self.has_shared and fuse_experts
            and shared.gate_proj.weight.shape[0] == self.hidden)
        extra = ([shared.gate_proj, shared.up_proj] if self.shared_in_switch
                 else ())
        try:
            if fuse_experts:
                self.gate_up = fuse_switch([sw.gate_proj, sw.up_proj], extra)
            else:
                self.gate_up = _Pair(fuse_switch([sw.gate_proj]),
                                     fuse_switch([sw.up_proj]))
            self.down = fuse_switch([sw.down_proj],
                                    [shared.down_proj] if self.shared_in_switch
                                    else ())
        except ValueError as e:
            raise NotImplementedError(f"MoE experts not supported: {e}") from e
        self.shared = (MLP.from_mlx_lm(shared, fuse_gate_up) if self.has_shared
                       and not self.shared_in_switch else None)
        self.experts_kernel = False     # build sets it when experts_kernel_fits()
        self.experts_routed = False     # ... and this when routed_fits() too

    def experts_kernel_fits(self) -> bool:
        """True when the experts (and the shared expert) can run as
        cuda_experts' two kernels: 4-bit affine switch weights with biases,
        gate+up fused, the shared expert (if any) a fused MLP of the same
        quantization and width, the routing and combine kernels in use."""
        gu, dn = self.gate_up, self.down
        if not (isinstance(gu, SwitchProj) and isinstance(dn, SwitchProj) and gu.qspec
                and gu.qspec == dn.qspec and "biases" in gu and "biases" in dn
                and not self.shared_in_switch and self.router_mode == "cuda"
                and self.combine == "cuda"
                and cuda_experts.supported(gu.qspec, self.hidden, dn.weight.shape[1])):
            return False
        sh = self.shared
        return sh is None or all(
            isinstance(p, Proj) and p.qspec == gu.qspec and "biases" in p and "bias" not in p
            for p in (sh.gate_up, sh.down)) and sh.hidden == self.hidden

    def routed_fits(self) -> bool:
        """True when the routing can run inside the gate/up kernel
        (cuda_experts.gate_up_routed): the experts kernels fit, and a shared
        expert's gate logit comes from the fused router."""
        return self.experts_kernel_fits() and (self.router_fused or not self.has_shared)

    def _experts_fused(self, x, h):
        """route, then cuda_experts.gate_up and down_combine (with
        experts_routed: the routing inside the gate/up kernel)."""
        sh, gs = self.shared, self.gate_up.qspec[0]
        shared = quantized(sh.gate_up) if sh else None
        if self.experts_routed:
            act, inds, w, gate = cuda_experts.gate_up_routed(
                x, self.router(x), self.top_k, self.norm_topk_prob,
                quantized(self.gate_up), shared, gs)
            gate = gate if sh else None
        else:
            inds, scores, ssum, gate = self._route(x)
            w = scores if ssum is None else scores / ssum
            act = cuda_experts.gate_up(x, inds, quantized(self.gate_up), shared, gs)
        base = h if h is not None else mx.zeros_like(x)
        return cuda_experts.down_combine(act, inds, w, gate, base, quantized(self.down),
                                         quantized(sh.down) if sh else None, gs)

    def _route(self, x):
        """(inds, scores, ssum or None, sigmoid(shared gate) or None)."""
        r = self.router(x)
        e, k = self.num_experts, self.top_k
        if self.router_mode == "cuda" and x.size == x.shape[-1] \
                and (self.router_fused or not self.has_shared):
            inds, w, gate = cuda_moe.route(r, k, e, self.norm_topk_prob, self.router_fused)
            return inds, w, None, gate if self.has_shared else None
        if self.router_fused:
            logits, sg = mx.split(r, [e], axis=-1)
        else:
            logits = r
            sg = self.shared_gate(x) if self.has_shared else None
        gate = mx.sigmoid(sg) if sg is not None else None
        if self.router_mode == "topk_softmax":
            inds = mx.argpartition(logits, kth=-k, axis=-1)[..., -k:]
            top = mx.take_along_axis(logits, inds, axis=-1)
            return inds, mx.softmax(top, axis=-1, precise=True), None, gate
        gates = mx.softmax(logits, axis=-1, precise=True)
        inds = mx.argpartition(gates, kth=-k, axis=-1)[..., -k:]
        scores = mx.take_along_axis(gates, inds, axis=-1)
        ssum = scores.sum(axis=-1, keepdims=True) if self.norm_topk_prob else None
        return inds, scores, ssum, gate

    def _experts(self, x, inds):
        """SwitchGLU: (B, L, D), (B, L, k) -> (B, L, k, D)."""
        one = x.size == x.shape[-1]                # one token: B * L == 1
        x = mx.expand_dims(x, (-2, -3))
        do_sort = inds.size >= 64
        idx, inv_order = inds, None
        if do_sort:
            x, idx, inv_order = _gather_sort(x, inds)
        const = one and not do_sort
        lhs_up = self._lhs_up if const else None
        lhs_down = self._lhs_down[inds.shape[-1] - self.top_k] if const else None
        gu = self.gate_up(x, idx, sorted_indices=do_sort, lhs_indices=lhs_up)
        n = self.hidden
        y = self.down(swiglu(*mx.split(gu, [n], axis=-1)), idx,
                      sorted_indices=do_sort, lhs_indices=lhs_down)
        if do_sort:
            y = mx.unflatten(y[inv_order], 0, inds.shape)
        return y.squeeze(-2)

    def _combine(self, y, scores, ssum=None):
        """sum_k (scores[k] / ssum) * y[k]: (B, L, k, D), (B, L, k) -> (B, L, D).

        The normalization (a bf16 divide, as mlx-lm does it) is broadcast to
        y's shape so that it fuses with the multiply into one kernel."""
        if self.combine == "matmul":
            w = scores if ssum is None else scores / ssum
            return (w[..., None, :] @ y).squeeze(-2)
        w = scores[..., None]
        if ssum is not None:
            w = mx.broadcast_to(w, y.shape) / mx.broadcast_to(ssum[..., None], y.shape)
        return (y * w).sum(axis=-2).astype(y.dtype)

    def __call__(self, x):
        return self._forward(x, None)

    def add_to(self, h, x):
        """h + self(x); with combine="cuda" at one token, one kernel does the
        weighted sum of the experts, the shared expert and this add."""
        return self._forward(x, h)

    def add_norm_to(self, h, x, w, eps: float, cuda: bool = False):
        """(h + self(x), rms_norm(of it, w, eps)): at one token the experts
        kernel (experts_kernel) or the combine kernel (combine="cuda") does
        the add (the combine kernel, with cuda, the norm too)."""
        if self.experts_kernel and x.size == x.shape[-1]:
            y = self._experts_fused(x, h)
            return y, mx.fast.rms_norm(y, w, eps)
        if self.combine == "cuda" and x.size == x.shape[-1]:
            if cuda:
                return self._forward(x, h, norm=(w, eps_array(eps)))
            y = self._forward(x, h)
            return y, mx.fast.rms_norm(y, w, eps)
        return add_norm(h, self._forward(x, None), w, eps, cuda)

    def _forward(self, x, h, norm=None):
        if self.experts_kernel and x.size == x.shape[-1]:
            return self._experts_fused(x, h)
        inds, scores, ssum, gate = self._route(x)
        k = self.top_k
        if self.shared_in_switch:
            if inds.shape[:-1] == (1, 1):
                extra = self._shared_idx
            else:
                extra = mx.full(inds.shape[:-1] + (1,), self.num_experts, mx.uint32)
            y_all = self._experts(x, mx.concatenate([inds, extra], -1))
        else:
            y_all = self._experts(x, inds)
        shared_y = None
        if self.has_shared and not self.shared_in_switch:
            shared_y = self.shared(x)
        if self.combine == "cuda" and x.size == x.shape[-1]:
            w = scores if ssum is None else scores / ssum
            base = h if h is not None else mx.zeros_like(x)
            return cuda_moe.combine(y_all, w, base, gate, shared_y, self.shared_in_switch, norm)
        y = self._combine(y_all[..., :k, :] if self.shared_in_switch else y_all,
                          scores, ssum)
        if self.has_shared:
            if self.shared_in_switch:
                shared_y = y_all[..., k, :]
            y = y + gate * shared_y
        return y if h is None else h + y
