"""mlxprof.decode.optimize: optimize_model() keeps mlx-lm's results, with fewer ops.

CPU, tiny random models (4-bit g64, router gates 8-bit) of every supported
architecture. On the CPU backend every default lever is exact: the logits are
bit-identical to mlx-lm's, so greedy tokens match too.
"""
from __future__ import annotations

import warnings

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from mlxprof import decode as generate
from mlxprof.decode.accuracy import yardstick
from mlxprof.graph import count_ops
from mlxprof.decode.optimize import (SUPPORTED, UnsupportedModelError, is_optimized,
                              optimize_model, unoptimize)
from mlxprof.lab.testing import random_model

ARCHS = ("llama", "qwen3", "qwen3_moe", "qwen3_5_moe", "qwen3_5", "qwen3_next")

# primitives in one decode step (forward, 8-token prompt) on the CPU backend:
# (mlx-lm, optimized). CPU counts include the composed fallbacks of mx.fast
# ops (rms_norm, rope, sdpa), which are one kernel each on a GPU.
EXPECTED_OPS = {
    "llama": (316, 159), "qwen3": (368, 167), "qwen3_moe": (418, 195),
    "qwen3_5_moe": (707, 358), "qwen3_5": (571, 282), "qwen3_next": (734, 358),
}

_MODELS: dict = {}


def model(arch):
    if arch not in _MODELS:
        orig = random_model(arch, "tiny", seed=0)
        _MODELS[arch] = (orig, optimize_model(orig))
    return _MODELS[arch]


def tokens(n, seed=1):
    return mx.random.randint(0, 512, (n,), key=mx.random.key(seed)).astype(mx.int32)


def step_counts(m, prompt):
    """Primitives by name in one decode step after prefilling prompt[:-1]."""
    from mlx_lm.models.cache import make_prompt_cache
    cache = make_prompt_cache(m)
    m(prompt[:-1][None], cache=cache)
    mx.eval([c.state for c in cache])
    return count_ops(m(prompt[-1:][None], cache=cache))


def step_ops(m, prompt):
    return sum(step_counts(m, prompt).values())


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_forced_logits_exact_on_the_cpu(arch):
    orig, opt = model(arch)
    seq = tokens(28)
    ref = generate.teacher_forced_logits(orig, seq, n_prompt=8)
    new = generate.teacher_forced_logits(opt, seq, n_prompt=8)
    c = generate.compare_logits(ref, new)
    assert c.max_abs_diff == 0.0, "default levers are exact on the CPU backend"


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_tokens_equal_mlx_lm(arch):
    orig, opt = model(arch)
    prompt = tokens(6, seed=2)
    ref = list(generate.mlx_lm_loop(orig, prompt, 16))
    assert list(generate.pipelined_loop(opt, prompt, 16)) == ref
    # mlx-lm's own generate_step runs the optimized model unchanged
    assert list(generate.mlx_lm_loop(opt, prompt, 16)) == ref


@pytest.mark.parametrize("arch", ARCHS)
def test_fewer_primitives_per_decode_step(arch):
    orig, opt = model(arch)
    prompt = tokens(8, seed=3)
    counts = (step_ops(orig, prompt), step_ops(opt, prompt))
    assert counts[1] < counts[0]
    assert counts == EXPECTED_OPS[arch]


def test_kv_cache_growth_past_256():
    """The in-compile KVCache write hands over to mlx-lm's growth path."""
    orig, opt = model("qwen3")
    seq = tokens(266, seed=8)
    ref = generate.teacher_forced_logits(orig, seq, n_prompt=250)
    new = generate.teacher_forced_logits(opt, seq, n_prompt=250)
    assert generate.compare_logits(ref, new).max_abs_diff == 0.0


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5_moe"])
def test_fast_repeatable_across_runs_cache_growth_and_poisoned_memory(arch):
    """Issue 13 item 16: the same tokens every run, past the 256-token KV-cache
    growth, also when MLX's buffer cache holds NaN (nothing reads unwritten memory)."""
    from mlxprof.lab.testing import poison_buffer_cache
    _, opt = model(arch)
    prompt = tokens(32, seed=11)
    runs = [list(generate.pipelined_loop(opt, prompt, 240))]
    runs.append(list(generate.pipelined_loop(opt, prompt, 240)))
    poison_buffer_cache()
    runs.append(list(generate.pipelined_loop(opt, prompt, 240)))
    assert runs[0] == runs[1] == runs[2]


def test_input_model_unchanged():
    orig = random_model("qwen3_5_moe", "tiny", seed=0)
    before = {k: (id(v), v) for k, v in tree_flatten(orig.parameters())}
    prompt = tokens(8, seed=4)
    ref = orig(prompt[None])
    mx.eval(ref)
    opt = optimize_model(orig)
    mx.eval(opt(prompt[None]))
    after = dict(tree_flatten(orig.parameters()))
    assert after.keys() == before.keys()
    for k, (ident, arr) in before.items():
        assert id(after[k]) == ident and mx.array_equal(after[k], arr), k
    assert mx.array_equal(orig(prompt[None]), ref)
    # weights that need no fusion are shared, not copied; fused ones are new
    orig_ids = {id(v) for _, v in tree_flatten(orig.parameters())}
    new = {k: id(v) in orig_ids for k, v in tree_flatten(opt.parameters())}
    assert new["embed_tokens.weight"] and new["decoder_layers.0.mixer.out_proj.weight"]
    assert not new["decoder_layers.0.mixer.in_proj.weight"]


def test_reversible_and_idempotent():
    orig, opt = model("qwen3")
    assert is_optimized(opt) and not is_optimized(orig)
    assert unoptimize(opt) is orig and unoptimize(orig) is orig
    again = optimize_model(opt)
    assert again.original is orig
    assert len(opt.layers) == len(orig.layers)
    assert type(opt.make_cache()[0]).__name__ == "KVCache"


def test_unknown_architecture():
    class Toy(nn.Module):
        def __call__(self, x, cache=None):
            return x
    with pytest.raises(UnsupportedModelError, match="supported: llama"):
        optimize_model(Toy())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        toy = Toy()
        assert optimize_model(toy, strict=False) is toy
    assert "unsupported architecture" in str(w[0].message)
    assert set(ARCHS) == set(SUPPORTED)


def test_bad_options():
    orig, _ = model("llama")
    with pytest.raises(ValueError, match="gated_delta"):
        optimize_model(orig, gated_delta="magic")
    with pytest.raises(TypeError):
        optimize_model(orig, no_such_lever=True)


@pytest.mark.parametrize("opts", [
    {"gated_delta": "algebraic"}, {"gated_delta": "fast"},
    {"shared_in_switch": True}, {"compile": False}, {"kv_in_compile": False},
    {"gated_delta": "mlx_lm"}, {"compile": False, "decode_path": False},
    {"prefill": "fused"}, {"prefill": "fused", "compile": False, "decode_path": False},
    {"fuse_qkv": False, "fuse_gate_up": False, "fuse_gdn_proj": False,
     "fuse_router": False, "fuse_experts": False, "merge_qk_norm": False},
])
def test_lever_variants_within_bar(opts):
    orig, _ = model("qwen3_5_moe")
    opt = optimize_model(orig, **opts)
    y = yardstick(orig, {"variant": opt}, tokens(8, seed=5), 17)
    assert y.ok, f"{opts}: {y}"


@pytest.mark.parametrize("arch", ["qwen3", "qwen3_5_moe"])
def test_prefill_runs_mlx_lm_own_code(arch):
    """prefill="mlx_lm": the prompt goes through the original model (its graph,
    its speed); "fused" through the fused weights (a different graph)."""
    orig, opt = model(arch)
    prompt = tokens(16, seed=6)
    ref = count_ops(orig(prompt[None]))
    assert count_ops(opt(prompt[None])) == ref
    assert count_ops(optimize_model(orig, prefill="fused")(prompt[None])) != ref


def test_decode_path_is_separate_from_compile():
    """compile=False keeps the one-token layer code (fewer ops than mlx-lm's
    general code); decode_path=False runs the general code at decode too."""
    orig, _ = model("qwen3_5_moe")
    prompt = tokens(8)
    general = step_ops(optimize_model(orig, compile=False, decode_path=False), prompt)
    decode = step_ops(optimize_model(orig, compile=False), prompt)
    compiled = step_ops(optimize_model(orig), prompt)
    assert compiled < decode < general


def test_decode_path_mixed_with_general_layers():
    """A layer that cannot take the one-token step (its own general code runs)
    hands no normalized state on: the next stepping layer normalizes itself."""
    orig, _ = model("qwen3_5_moe")
    opt = optimize_model(orig)
    for i in (0, 2):                       # a GDN layer and the one after it
        opt.layers[i].can_step = lambda cache, mask: False
    seq = tokens(20, seed=9)
    ref = generate.teacher_forced_logits(orig, seq, 8)
    assert mx.array_equal(ref, generate.teacher_forced_logits(opt, seq, 8))
    assert step_ops(opt, tokens(8)) > step_ops(optimize_model(orig), tokens(8))


def test_mlx_lm_recurrence_is_bit_exact():
    """gated_delta="mlx_lm" runs mlx-lm's own GDN functions at decode: the
    exact-rounding choice (on CUDA too, uncompiled: scripts/check_fast.py)."""
    orig, _ = model("qwen3_5_moe")
    seq = tokens(20, seed=7)
    ref = generate.teacher_forced_logits(orig, seq, 8)
    for opts in ({"gated_delta": "mlx_lm"}, {"gated_delta": "mlx_lm", "compile": False}):
        got = generate.teacher_forced_logits(optimize_model(orig, **opts), seq, 8)
        assert mx.array_equal(ref, got), opts
    # mlx-lm's conv1d runs at decode only on this path ("ops" does 4 multiply-adds)
    convs = {r: step_counts(optimize_model(orig, gated_delta=r, compile=False),
                            tokens(8)).get("Convolution", 0) for r in ("mlx_lm", "ops")}
    assert convs["mlx_lm"] > 0 and convs["ops"] == 0, convs


@pytest.mark.parametrize("opts", [{"router": "topk_softmax"}, {"combine": "matmul"}])
def test_router_variants_close_per_block(opts):
    """Not exact (ties, rounding): one MoE block stays close to mlx-lm's."""
    from mlxprof.decode.optimize.ffn import MoE
    orig, _ = model("qwen3_5_moe")
    blk = orig.language_model.model.layers[0].mlp
    ours = MoE(blk, **opts)
    x = mx.random.normal((1, 8, 64), key=mx.random.key(6)).astype(mx.bfloat16)
    ref, new = blk(x), ours(x)
    rel = (mx.abs(ref - new).max() / mx.abs(ref).max()).item()
    assert rel < 0.05, rel


def _moe_block(arch: str, seed: int):
    """(mlx-lm's last MoE block, our MoE of it, x, h): one token, bf16."""
    from mlxprof.decode.optimize.ffn import MoE
    orig, _ = model(arch)
    blk = getattr(orig, "language_model", orig).model.layers[-1].mlp
    ks = mx.random.split(mx.random.key(seed), 2)
    x, h = (mx.random.normal((1, 1, 64), key=k).astype(mx.bfloat16) for k in ks)
    return blk, MoE(blk), x, h


def _route(ours, x):
    """cuda_moe's routing contract in MLX ops: (inds, weights, shared gate)."""
    from mlxprof.decode.kernels import cuda_moe
    return cuda_moe.route_reference(ours.router(x), ours.top_k, ours.num_experts,
                                    ours.norm_topk_prob, ours.has_shared)


@pytest.mark.parametrize("arch", ["qwen3_5_moe", "qwen3_moe"])
def test_moe_kernel_references_equal_mlx_lm(arch):
    """route_reference + combine_reference (the contracts cuda_moe's kernels
    are checked against on the GPU) give mlx-lm's block output bit-exactly,
    residual add included."""
    from mlxprof.decode.kernels import cuda_moe
    blk, ours, x, h = _moe_block(arch, 8)
    inds, w, sg = _route(ours, x)
    shared = ours.shared(x) if ours.has_shared else None
    got = cuda_moe.combine_reference(ours._experts(x, inds), w, h,
                                     sg if ours.has_shared else None, shared)
    assert mx.array_equal(got, h + blk(x))
    assert mx.array_equal(ours.add_to(h, x), h + blk(x))


@pytest.mark.parametrize("arch", ["qwen3_5_moe", "qwen3_moe"])
def test_experts_kernel_references_equal_mlx_lm(arch):
    """gate_up_reference + down_combine_reference (cuda_experts' contracts,
    checked against its kernels on the GPU) after route_reference give
    mlx-lm's block output plus the residual bit-exactly; the block fits the
    kernels (4-bit experts, fused gate/up, a shared expert of the same width)."""
    from mlxprof.decode.kernels import cuda_experts
    blk, ours, x, h = _moe_block(arch, 9)
    inds, w, sg = _route(ours, x)
    from mlxprof.decode.optimize.ffn import quantized as qsb
    sh, gs = ours.shared, ours.gate_up.qspec[0]
    act = cuda_experts.gate_up_reference(x, inds, qsb(ours.gate_up),
                                         qsb(sh.gate_up) if sh else None, gs)
    got = cuda_experts.down_combine_reference(act, inds, w, sg if sh else None, h,
                                              qsb(ours.down), qsb(sh.down) if sh else None, gs)
    assert mx.array_equal(got, h + blk(x))
    ours.router_mode = ours.combine = "cuda"     # what "auto" picks on a CUDA GPU
    assert ours.experts_kernel_fits()


@pytest.mark.parametrize("arch", ["qwen3_5_moe", "qwen3_moe"])
@pytest.mark.parametrize("routed", [False, True])
def test_experts_kernel_path_wiring(monkeypatch, arch, routed):
    """MoE's experts-kernel path (route -> gate_up -> down_combine -> MLX's
    RMSNorm, or with experts_routed gate_up_routed -> down_combine -> ...),
    run on the CPU with each kernel replaced by its MLX-ops reference, gives
    mlx-lm's h + block(x) and its norm bit-exactly: the arguments reach the
    kernels in the order and shapes they expect."""
    from mlxprof.decode.kernels import cuda_experts, cuda_moe
    called = []

    def spy(name, fn):
        return lambda *a, **k: called.append(name) or fn(*a, **k)

    monkeypatch.setattr(cuda_moe, "route", spy("route", cuda_moe.route_reference))
    for name in ("gate_up", "gate_up_routed", "down_combine"):
        monkeypatch.setattr(cuda_experts, name,
                            spy(name, getattr(cuda_experts, name + "_reference")))
    blk, ours, x, h = _moe_block(arch, 10)
    ours.router_mode = ours.combine = "cuda"
    assert ours.experts_kernel_fits() and ours.routed_fits()
    ours.experts_kernel, ours.experts_routed = True, routed
    w = mx.ones((64,), mx.bfloat16)
    want = h + blk(x)
    got, normed = ours.add_norm_to(h, x, w, 1e-6, cuda=True)
    assert mx.array_equal(got, want)
    assert mx.array_equal(normed, mx.fast.rms_norm(want, w, 1e-6))
    assert mx.array_equal(ours.add_to(h, x), want)
    path = ["gate_up_routed", "down_combine"] if routed else \
        ["route", "gate_up", "down_combine"]
    assert called == path * 2


def test_cuda_only_levers_refuse_cpu():
    orig, _ = model("qwen3_5_moe")
    for opts in ({"router": "cuda"}, {"combine": "cuda"}, {"experts": "cuda"},
                 {"experts": "routed"},
                 {"gated_delta": "fused"},
                 {"add_norm": "cuda"}, {"qk_norm_rope": "cuda"}, {"qmv": "cuda"},
                 {"qmv": "swiglu"}, {"attention": "cuda"}):
        with pytest.raises(ValueError, match="CUDA backend"):
            optimize_model(orig, **opts)


@pytest.mark.parametrize("arch,dense", [("qwen3", True), ("qwen3_5_moe", False)])
def test_qmv_auto_marks_dense_models_only(monkeypatch, arch, dense):
    """qmv="auto" with a GPU (pretended; checks passing): every 4-bit
    projection of a dense model runs by cuda_qmv, none of an MoE model."""
    from mlxprof.decode.kernels import cuda_qmv
    from mlxprof.decode.optimize import build
    from mlxprof.decode.optimize.fuse import Proj
    monkeypatch.setattr(build, "on_cuda", lambda: True)
    for name in ("self_check", "self_check_swiglu"):
        monkeypatch.setattr(cuda_qmv, name, lambda *a, **k: 0.0)
    orig, _ = model(arch)
    fast = optimize_model(orig, add_norm="ops", qk_norm_rope="ops", router="exact",
                          combine="exact", gated_delta="ops")
    projs = [m for l in fast.layers for _, m in l.named_modules() if isinstance(m, Proj)
             and m.qspec and m.qspec[1] == 4]
    assert projs and all(p.cuda_qmv == dense for p in projs)


def test_gated_delta_contract():
    """mx.fast.gated_delta_update vs mlx-lm's op path (see gdn.py's doc)."""
    from mlx_lm.models.gated_delta import gated_delta_ops
    from mlxprof.decode.optimize.gdn import _delta_step, _delta_step_algebraic
    ks = mx.random.split(mx.random.key(7), 6)
    hk, hv, d = 2, 4, 64
    q = (mx.random.normal((1, 1, hk, d), key=ks[0]) * 0.1).astype(mx.bfloat16)
    k = (mx.random.normal((1, 1, hk, d), key=ks[1]) * 0.1).astype(mx.bfloat16)
    v = mx.random.normal((1, 1, hv, d), key=ks[2]).astype(mx.bfloat16)
    g = mx.random.uniform(0.5, 1.0, (1, 1, hv), key=ks[3])
    beta = mx.random.uniform(0, 1, (1, 1, hv), key=ks[4]).astype(mx.bfloat16)
    s = mx.random.normal((1, hv, d, d), key=ks[5])
    y0, s0 = gated_delta_ops(q, k, v, g, beta, s)
    f32 = mx.float32
    # float32 inputs: the same numbers (gamma is not rounded to q's dtype)
    y1, s1 = mx.fast.gated_delta_update(q.astype(f32), k.astype(f32),
                                        v.astype(f32), g, beta.astype(f32), s)
    assert mx.array_equal(y1.astype(mx.bfloat16), y0) and mx.array_equal(s1, s0)
    # bf16 inputs: gamma is cast to bf16 first, so the state drifts
    _, s2 = mx.fast.gated_delta_update(q, k, v, g, beta, s)
    assert not mx.array_equal(s2, s0)
    # the state is (B, Hv, Dv, Dk): swapping the last two axes changes y
    y3, _ = mx.fast.gated_delta_update(q.astype(f32), k.astype(f32), v.astype(f32),
                                       g, beta.astype(f32), s.swapaxes(-1, -2))
    assert not mx.allclose(y3, y1)
    # ours: grouped heads instead of mx.repeat, exact; algebraic, close
    y4, s4 = _delta_step(q, k, v, g, beta, s)
    assert mx.array_equal(y4, y0) and mx.array_equal(s4, s0)
    y5, s5 = _delta_step_algebraic(mx.concatenate([q, k], 2), v, g, beta, s)
    assert mx.allclose(y5.astype(f32), y0.astype(f32), atol=2e-2)
    assert mx.allclose(s5, s0, atol=1e-5)


def _smollm2_path():
    try:
        from mlxprof.lab.models import smollm2
        p = smollm2.cached_path()
        return p if p.exists() else None
    except Exception:
        return None


@pytest.mark.smollm2
@pytest.mark.skipif(_smollm2_path() is None, reason="SmolLM2 weights not fetched")
def test_smollm2_greedy_text_identical():
    from mlxprof.lab.models import smollm2
    m, tok, _ = smollm2.load(_smollm2_path())
    opt = optimize_model(m)
    # short raw-text prompts: on a 2-core CPU each token costs ~0.3 s
    for text in ("The capital of France is", "def fibonacci(n):", "Once upon a time"):
        ids = mx.array(tok.encode(text), mx.int32)
        ref = list(generate.mlx_lm_loop(m, ids, 6))
        assert list(generate.pipelined_loop(opt, ids, 6)) == ref, text
        assert tok.decode(ref).strip()


def test_experts_float32_reference_is_close_to_the_bf16_one():
    """cuda_experts' self-check judges the kernels by their distance to a
    float32 run of the same contracts; on the CPU that float32 run and the
    bf16 MLX-ops references agree to bf16 rounding (weights as mx.quantize
    returns them, a list)."""
    from mlxprof.decode.kernels import cuda_experts as ce
    from mlxprof.decode.kernels.cuda_common import rel_diff
    ks = mx.random.split(mx.random.key(3), 6)
    gs, n_exp, k, dim, n = 64, 8, 2, 128, 64
    gu = ce._quantized(ks[0], (n_exp, 2 * n, dim), gs)
    dn = ce._quantized(ks[1], (n_exp, dim, n), gs)
    sgu, sdn = ce._quantized(ks[2], (2 * n, dim), gs), ce._quantized(ks[3], (dim, n), gs)
    x, h = (mx.random.normal((1, 1, dim), key=key).astype(mx.bfloat16) for key in ks[4:])
    inds = mx.array([[[5, 2]]], mx.uint32)
    scores, sg = mx.array([[[0.75, 0.25]]], mx.bfloat16), mx.array([[[0.5]]], mx.bfloat16)
    act = ce.gate_up_reference(x, inds, gu, sgu, gs)
    out = ce.down_combine_reference(act, inds, scores, sg, h, dn, sdn, gs)
    act32 = ce._swiglu_rows(x, ce._slots(inds, ce._f32(gu, gs), ce._f32(sgu, gs)),
                            ce._f32_matmul, n)
    out32 = ce._combine_rows(act32, ce._slots(inds, ce._f32(dn, gs), ce._f32(sdn, gs)), k,
                             scores, sg, h, ce._f32_matmul)
    assert act.shape == act32.shape == (3, n) and out.shape == out32.shape == (1, 1, dim)
    assert rel_diff(act, act32) < 0.03 and rel_diff(out, out32) < 0.01


@pytest.mark.parametrize("routed_check,want", [(0.0, True), (float("inf"), False)])
def test_experts_auto_routes_inside_gate_up_when_its_check_passes(monkeypatch, routed_check,
                                                                  want):
    """experts="auto" with a GPU (pretended; the other kernels' checks
    passing): every MoE block runs the experts kernels, with the routing
    inside gate/up only when that kernel's own self-check passes."""
    from mlxprof.decode.kernels import cuda_experts, cuda_moe
    from mlxprof.decode.optimize import build, ffn
    from mlxprof.decode.optimize.ffn import MoE
    for mod in (build, ffn):
        monkeypatch.setattr(mod, "on_cuda", lambda: True)
    monkeypatch.setattr(cuda_moe, "self_check", lambda *a, **k: 0.0)
    monkeypatch.setattr(cuda_experts, "self_check", lambda *a, **k: 0.0)
    monkeypatch.setattr(cuda_experts, "self_check_routed", lambda *a, **k: routed_check)
    orig, _ = model("qwen3_5_moe")
    fast = optimize_model(orig, add_norm="ops", qk_norm_rope="ops", gated_delta="ops",
                          qmv="ops")
    moes = [m for l in fast.layers for _, m in l.named_modules() if isinstance(m, MoE)]
    assert moes and all(m.experts_kernel and m.experts_routed == want for m in moes)


@pytest.mark.parametrize("d", [64, 128, 256])
def test_decode_attention_reference_equals_mlx_lm(d):
    """cuda_attention's contract in MLX ops (what its kernel is checked
    against on the GPU) is mlx-lm's decode path bit-exactly: the cache
    buffers sliced to the valid length, then mlx-lm's sdpa (GQA heads), its
    heads side by side as o_proj takes them."""
    from mlx_lm.models.base import scaled_dot_product_attention
    from mlxprof.decode.kernels.cuda_attention import decode_attention_reference
    ks = mx.random.split(mx.random.key(d), 3)
    q = mx.random.normal((1, 4, 1, d), key=ks[0]).astype(mx.bfloat16)
    keys, values = (mx.random.normal((1, 2, 300, d), key=k).astype(mx.bfloat16)
                    for k in ks[1:])
    n, scale = 257, d ** -0.5
    want = scaled_dot_product_attention(q, keys[..., :n, :], values[..., :n, :], cache=None,
                                        scale=scale, mask=None).reshape(1, 1, 4 * d)
    got = decode_attention_reference(q, keys, values, mx.array(n, mx.int32), scale)
    assert mx.array_equal(got, want)


def assert_same_decode(patched, fast, seq, n_prompt: int, prompt) -> None:
    """`patched` gives `fast`'s teacher-forced logits over seq (bit for bit)
    and its 8 greedy tokens after prompt."""
    want = generate.teacher_forced_logits(fast, seq, n_prompt=n_prompt)
    assert mx.array_equal(generate.teacher_forced_logits(patched, seq, n_prompt=n_prompt), want)
    assert list(generate.pipelined_loop(patched, prompt, 8)) == \
        list(generate.pipelined_loop(fast, prompt, 8))


def _attention_kernel_marked(fast) -> list[bool]:
    return [l.mixer.cuda_attention for l in fast.layers if hasattr(l.mixer, "cuda_attention")]


@pytest.mark.parametrize("arch", ["qwen3", "llama", "qwen3_5_moe"])
def test_attention_kernel_path_wiring(monkeypatch, arch):
    """The decode step's one-kernel attention path (the full cache buffers
    and the shared n_valid array handed to cuda_attention.decode_attention),
    run on the CPU with the kernel replaced by its MLX-ops reference, gives
    the fast model's logits and greedy tokens bit-exactly (GQA heads; Qwen3.5's
    gated attention), past the KV cache's 256-token growth."""
    from mlxprof.decode.kernels import cuda_attention
    orig, fast = model(arch)
    patched = optimize_model(orig)
    for l in patched.layers:
        if hasattr(l.mixer, "cuda_attention"):
            l.mixer.cuda_attention = True
    assert any(_attention_kernel_marked(patched))
    calls = []
    ref = cuda_attention.decode_attention_reference
    monkeypatch.setattr(cuda_attention, "decode_attention",
                        lambda *a: calls.append(a[3]) or ref(*a))
    assert_same_decode(patched, fast, tokens(262, seed=12), 250, tokens(6, seed=13))
    assert calls


@pytest.mark.parametrize("value,want", [("auto", True), ("ops", False)])
def test_attention_auto_marks_attention_layers(monkeypatch, value, want):
    """attention="auto" with a GPU (pretended; the check passing) runs every
    attention layer's decode sdpa by cuda_attention; "ops" none."""
    from mlxprof.decode.kernels import cuda_attention
    from mlxprof.decode.optimize import build
    monkeypatch.setattr(build, "on_cuda", lambda: True)
    monkeypatch.setattr(cuda_attention, "self_check", lambda *a, **k: 0.0)
    orig, _ = model("qwen3_5_moe")
    fast = optimize_model(orig, attention=value, add_norm="ops", qk_norm_rope="ops",
                          router="exact", combine="exact", gated_delta="ops", qmv="ops",
                          experts="ops")
    marked = _attention_kernel_marked(fast)
    assert marked and all(m == want for m in marked)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_rope_kernel_path_wiring(monkeypatch, arch):
    """qk_norm_rope="auto" with a GPU (pretended; the check passing) marks
    every attention layer, llama's (no q/k norms) included; its one-kernel
    path, run on the CPU with the kernel replaced by its MLX-ops reference,
    gives the fast model's logits and greedy tokens bit-exactly."""
    from mlxprof.decode.kernels import cuda_rope
    from mlxprof.decode.optimize import attention, build
    orig, fast = model(arch)
    monkeypatch.setattr(build, "on_cuda", lambda: True)
    monkeypatch.setattr(cuda_rope, "self_check", lambda attn: 0.0)
    patched = optimize_model(orig, qk_norm_rope="auto", add_norm="ops", qmv="ops",
                             attention="ops")
    marked = [l.mixer.cuda_rope for l in patched.layers if hasattr(l.mixer, "cuda_rope")]
    assert marked and all(marked)
    calls = []
    monkeypatch.setattr(attention, "qk_norm_rope", lambda *a: calls.append(1)
                        or cuda_rope.qk_norm_rope_reference(*a))
    assert_same_decode(patched, fast, tokens(40, seed=14), 30, tokens(6, seed=15))
    assert calls


def test_decode_out_takes_the_attention_kernels_layout_without_a_reshape():
    """cuda_attention returns the heads side by side (B, 1, H * D), as o_proj
    takes them: decode_out adds no Reshape op for it, and gives what the
    sdpa layout (B, H, 1, D) gives."""
    orig, fast = model("llama")
    attn = fast.layers[0].mixer
    h, d = attn.n_heads, attn.head_dim
    o4 = mx.random.normal((1, h, 1, d), key=mx.random.key(3))
    o3 = o4.reshape(1, 1, h * d)
    mx.eval(o3)
    assert "Reshape" not in count_ops(attn.decode_out(o3, None))
    assert "Reshape" in count_ops(attn.decode_out(o4, None))
    assert mx.array_equal(attn.decode_out(o3, None), attn.decode_out(o4, None))
