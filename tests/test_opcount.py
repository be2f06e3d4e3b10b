"""Ops per decode token on shapes-only models, the kernel tally, and the MoE explorer."""
import mlx.core as mx
import pytest

from mlxprof.lab import models, opcount


def test_counts_follow_structure_not_width():
    small = opcount.ops_per_token(models.load("qwen3-8b", "small", shapes_only=True).model)
    full = opcount.ops_per_token(models.load("qwen3-8b", "full", shapes_only=True).model)
    assert small.ops == full.ops and small.total == sum(small.ops.values()) > 0


def test_gpu_estimates_collapse_each_kernel_call():
    c = opcount.ops_per_token(models.load("qwen3.5-35b-a3b", "tiny", shapes_only=True).model)
    calls = c.kernel_calls
    assert calls["mx.fast.rms_norm"] > 0 and calls["gated_delta_ops"] > 0
    assert c.metal_est < c.cuda_est < c.total
    inner = sum(c.kernel_ops[k] for k in opcount.GPU_FAST if k in c.kernel_ops)
    assert c.cuda_est == c.total - inner + sum(calls[k] for k in opcount.GPU_FAST if k in calls)
    assert c["total"] == c.total                      # reads like the old dicts


def test_kernel_tally_restores_what_it_patched():
    before = mx.fast.rms_norm
    with opcount.KernelTally() as tally:
        assert mx.fast.rms_norm is not before
        tally.on = True
        mx.fast.rms_norm(mx.ones((1, 8)), mx.ones((8,)), 1e-5)
    assert mx.fast.rms_norm is before
    assert tally.calls["mx.fast.rms_norm"] == 1 and tally.inner["mx.fast.rms_norm"] > 1


def test_moe_ops_layers_count_experts_do_not():
    a = opcount.moe_ops("qwen3-30b-a3b", experts=16, top_k=4, layers=2)
    b = opcount.moe_ops("qwen3-30b-a3b", experts=64, top_k=4, layers=2)
    c = opcount.moe_ops("qwen3-30b-a3b", experts=16, top_k=4, layers=4)
    assert a.total == b.total and c.total > a.total


def test_moe_ops_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match="not a mixture-of-experts"):
        opcount.moe_ops("qwen3-8b")
    with pytest.raises(ValueError, match=">= 1"):
        opcount.moe_ops("qwen3-30b-a3b", layers=0)


def test_kinds():
    assert opcount.by_kind({"GatherQMM": 3, "AsType": 2, "CompiledAdd": 1, "Exp": 1}) == {
        "matmul (quantized, gathered)": 3, "casts (AsType)": 2,
        "compiled (fused by mx.compile)": 1, "elementwise & other": 1}
