"""Self-check mlxprof's custom CUDA kernels at a model's shapes (GPU, seconds).

    python3 experiments/check_kernels.py --model qwen3.5-35b-a3b --scale small

Builds the model's weights (no prefill), then prints the self-check value
(max relative difference to the MLX-ops reference) of the MoE routing and
combine kernels (cuda_moe), the experts kernels with and without the routing
inside (cuda_experts), the one-kernel GDN step (cuda_gdn_layer), the
residual add + RMSNorm kernel (cuda_norm), the q/k norm + RoPE kernel
(cuda_rope), the decode attention (cuda_attention) and the one-row matvec
with and without SwiGLU (cuda_qmv), with the exception behind any failed
check. Writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json


def self_checks(fast) -> dict:
    """Self-check value of each kernel family at `fast`'s shapes (an
    optimize_model result), and the exceptions of failed checks."""
    from mlxprof.decode.kernels import (cuda_attention, cuda_common, cuda_experts,
                                        cuda_gdn_layer, cuda_moe, cuda_norm, cuda_qmv,
                                        cuda_rope)
    from mlxprof.decode.optimize.ffn import MLP
    out = {}
    ffn = next((l.ffn for l in fast.layers if hasattr(l.ffn, "router_mode")), None)
    if ffn is not None:
        out["moe"] = cuda_moe.self_check(ffn.num_experts, ffn.top_k, ffn.down.weight.shape[1])
        if ffn.gate_up.qspec and cuda_experts.supported(ffn.gate_up.qspec, ffn.hidden,
                                                        ffn.down.weight.shape[1]):
            key = (ffn.num_experts, ffn.top_k, ffn.down.weight.shape[1], ffn.hidden,
                   ffn.gate_up.qspec[0], ffn.shared is not None)
            out["experts"] = cuda_experts.self_check(*key)
            out["experts_routed"] = cuda_experts.self_check_routed(*key, ffn.norm_topk_prob)
    mixer = next((l.mixer for l in fast.layers if hasattr(l.mixer, "recurrence")), None)
    if mixer is not None and cuda_gdn_layer.supported(mixer):
        out["gdn_fused"] = cuda_gdn_layer.self_check(mixer)
    layer = fast.layers[0]
    out["add_norm"] = cuda_norm.self_check(layer.post_w.shape[0], float(layer.post_eps))
    attn = next((l.mixer for l in fast.layers if hasattr(l.mixer, "cuda_rope")), None)
    if attn is not None and cuda_rope.supported(attn):
        out["qk_norm_rope"] = cuda_rope.self_check(attn)
    dt = layer.post_w.dtype
    if attn is not None and cuda_attention.supported(attn.head_dim, attn.n_heads,
                                                     attn.n_kv, dt):
        out["attention"] = cuda_attention.self_check(1, attn.n_heads, attn.n_kv,
                                                     attn.head_dim, dtype=dt)
    ffn = fast.layers[0].ffn          # a dense MLP, or an MoE with a shared one
    mlp = ffn if isinstance(ffn, MLP) else getattr(ffn, "shared", None)
    if isinstance(mlp, MLP) and getattr(mlp.gate_up, "qspec", None):
        k = mlp.gate_up.scales.shape[-1] * mlp.gate_up.qspec[0]
        out["qmv"] = cuda_qmv.self_check(2 * mlp.hidden, k)
        out["qmv_swiglu"] = cuda_qmv.self_check_swiglu(mlp.hidden, k)
    out["errors"] = {str(k): v for k, v in cuda_common.ERRORS.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--out", default="out/check_kernels.json")
    args = ap.parse_args()

    import mlxprof.lab.models as M
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.provenance import collect

    lm = M.load(args.model, scale=args.scale, seed=0)
    fast = optimize_model(lm.model, router="exact", combine="exact", gated_delta="ops",
                          add_norm="ops", qk_norm_rope="ops")
    out = {"model": args.model, "scale": args.scale, "provenance": collect(),
           **self_checks(fast)}
    print(json.dumps(out, indent=1, default=str))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
