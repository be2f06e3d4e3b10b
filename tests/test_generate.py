"""Decode loops: identical greedy tokens to mlx-lm, clear errors, tolerance helpers."""

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx_lm.models import llama, qwen3, qwen3_5, qwen3_5_moe

from mlxprof import decode as g

SAME_MATH = ["sync", "async", "pipelined", "compiled"]
VOCAB = 256


def _qwen3_5_text(moe: bool) -> dict:
    cfg = dict(
        model_type="qwen3_5_moe_text" if moe else "qwen3_5_text", hidden_size=64,
        intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, vocab_size=VOCAB,
        linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16,
        linear_value_head_dim=16, linear_conv_kernel_dim=4,
        full_attention_interval=4, max_position_embeddings=4096,
        rope_parameters={"type": "default", "rope_theta": 1e4,
                         "partial_rotary_factor": 0.25, "mrope_section": [2, 1, 1]})
    if moe:
        cfg.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                   shared_expert_intermediate_size=32, decoder_sparse_step=1)
    return cfg


def _construct(kind: str) -> nn.Module:
    if kind == "qwen3":
        return qwen3.Model(qwen3.ModelArgs(
            model_type="qwen3", hidden_size=64, num_hidden_layers=2,
            intermediate_size=128, num_attention_heads=4, rms_norm_eps=1e-6,
            vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=4096,
            head_dim=16, tie_word_embeddings=False, rope_theta=1e4))
    if kind == "llama":
        return llama.Model(llama.ModelArgs(
            model_type="llama", hidden_size=64, num_hidden_layers=2,
            intermediate_size=128, num_attention_heads=4, rms_norm_eps=1e-5,
            vocab_size=VOCAB, num_key_value_heads=2))
    if kind == "qwen3_5":
        return qwen3_5.Model(qwen3_5.ModelArgs(
            model_type="qwen3_5", text_config=_qwen3_5_text(False)))
    return qwen3_5_moe.Model(qwen3_5_moe.ModelArgs(
        model_type="qwen3_5_moe", text_config=_qwen3_5_text(True)))


def tiny_model(kind: str, quantized: bool = False, seed: int = 0) -> nn.Module:
    """A tiny random mlx-lm model; `quantized`: bf16 + 4-bit like MLX releases."""
    mx.random.seed(seed)
    model = _construct(kind)
    if quantized:
        model.set_dtype(mx.bfloat16)
        nn.quantize(model, group_size=32, bits=4)
    mx.eval(model.parameters())
    return model


def tiny_prompt(n: int, seed: int = 1) -> mx.array:
    return mx.random.randint(0, VOCAB, (n,), key=mx.random.key(seed)).astype(mx.int32)


# (model, bf16 + 4-bit?, prefill chunk): chunk 8 splits the 21-token prompt's
# prefill into 8 + 8 + 4 tokens; 2048 is mlx-lm's default (one chunk)
CASES = [("qwen3", False, 2048), ("qwen3", False, 8), ("qwen3", True, 8),
         ("qwen3_5", False, 8), ("qwen3_5_moe", True, 2048), ("qwen3_5_moe", True, 8)]


@pytest.mark.parametrize("kind, quantized, step", CASES,
                         ids=[f"{k}-{'q4' if q else 'f32'}-chunk{s}" for k, q, s in CASES])
def test_same_math_loops_give_mlx_lm_tokens(kind, quantized, step):
    model = tiny_model(kind, quantized)
    prompt = tiny_prompt(21)
    ref = list(g.LOOPS["mlx_lm"].fn(model, prompt, 10, prefill_step_size=step))
    assert len(ref) == 10 and all(type(t) is int for t in ref)
    for name in SAME_MATH:
        got = list(g.stream(model, prompt, 10, loop=name, prefill_step_size=step))
        assert got == ref, name


def test_one_token_prompt_and_one_token_budget():
    model = tiny_model("qwen3")
    prompt = tiny_prompt(1)
    ref = list(g.stream(model, prompt, 3, loop="mlx_lm"))
    for name in SAME_MATH:
        assert list(g.stream(model, prompt, 3, loop=name)) == ref
        assert list(g.stream(model, prompt, 1, loop=name)) == ref[:1]


def test_prompt_as_python_list():
    model = tiny_model("qwen3")
    ids = [3, 1, 4, 1, 5]
    assert list(g.stream(model, ids, 4)) == list(
        g.stream(model, mx.array(ids), 4, loop="mlx_lm"))


@pytest.mark.parametrize("prompt, max_tokens, message", [
    (mx.array([1, 2]), 0, "max_tokens must be >= 1"),
    (mx.array([1, 2]), -3, "max_tokens must be >= 1"),
    (mx.array([1, 2]), 2.0, "max_tokens must be an int"),
    (mx.array([], dtype=mx.int32), 4, "prompt is empty"),
    (mx.array([[1, 2]]), 4, "prompt must be 1-D"),
    (mx.array([1.0, 2.0]), 4, "integer token ids"),
])
def test_bad_arguments_raise_at_call_time(prompt, max_tokens, message):
    for name in g.LOOPS:
        with pytest.raises(ValueError, match=message):
            g.LOOPS[name].fn(None, prompt, max_tokens)  # raises before next()
    with pytest.raises(ValueError, match=message):
        g.stream(None, prompt, max_tokens)


def test_unknown_loop_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown loop 'nope'; known loops: sync, mlx_lm"):
        g.stream(None, [1], 1, loop="nope")


def test_registry_describes_every_loop():
    assert list(g.LOOPS)[:5] == ["sync", "mlx_lm", "async", "pipelined", "compiled"]
    for name, loop in g.LOOPS.items():
        assert loop.name == name and loop.description and callable(loop.fn)


def test_fast_is_registered_with_its_model_rewrite():
    assert list(g.LOOPS) == ["sync", "mlx_lm", "async", "pipelined", "compiled", "fast"]
    assert g.LOOPS["fast"].prepare is not None


def test_stream_prepares_once_per_model():
    calls = []

    def prepare(m):
        calls.append(id(m))
        return m

    g.register(g.Loop("_counted", g.pipelined_loop, "test", prepare=prepare))
    try:
        a, b = tiny_model("qwen3"), tiny_model("qwen3", seed=1)
        for m in (a, a, b):
            list(g.stream(m, [1, 2, 3], 2, loop="_counted"))
        assert calls == [id(a), id(b)]
    finally:
        del g.LOOPS["_counted"]


def test_teacher_forced_logprobs_reproduce_the_decoded_tokens():
    model = tiny_model("qwen3_5_moe", quantized=True)
    prompt = tiny_prompt(9)
    toks = list(g.stream(model, prompt, 10, loop="mlx_lm"))
    seq = mx.concatenate([prompt, mx.array(toks, dtype=mx.int32)])
    # prefill prompt[:-1] at once, then one token per step: as generate_step does
    lp = g.teacher_forced_logits(model, seq, n_prompt=prompt.size - 1, logprobs=True)
    assert lp.shape == (seq.size - prompt.size + 2, VOCAB) and lp.dtype == mx.float32
    assert mx.argmax(lp[1:-1], axis=-1).tolist() == toks


def test_compare_logits_bar():
    ref = mx.random.normal((20, VOCAB), key=mx.random.key(0)) * 5
    same = g.compare_logits(ref, ref)
    assert same.ok and same.rel_max_diff == 0.0 and same.argmax_agreement == 1.0
    assert g.compare_logits(ref, ref * 1.01).ok          # 1% off: within the bar
    off = g.compare_logits(ref, ref * 1.05)
    assert not off.ok and off.rel_max_diff == pytest.approx(0.05, rel=1e-3)
    flipped = ref.at[0:2].add(-ref[0:2] * 2)              # 2 of 20 rows change argmax
    c = g.compare_logits(ref, flipped, max_rel_diff=10.0)
    assert c.argmax_agreement == pytest.approx(0.9) and not c.ok
    assert "FAIL" in str(c) and "agreement" in str(c)
    with pytest.raises(ValueError, match="one shape"):
        g.compare_logits(ref, ref[:3])


@pytest.mark.parametrize("kind", ["qwen3", "qwen3_5_moe"])
def test_fast_within_bf16_tolerance(kind):
    model = tiny_model(kind, quantized=True)
    prompt = tiny_prompt(9)
    from mlxprof.decode.accuracy import yardstick
    fast = g.LOOPS["fast"].prepare(model)
    y = yardstick(model, {"fast": fast}, prompt, 16)   # as close to float32 as mlx-lm
    assert y.ok, str(y)


@pytest.mark.parametrize("prompt", [[1, VOCAB], [5, -1, 3], mx.array([VOCAB + 7]),
                                    [2**40], mx.array([2**31 - 1])])
def test_token_ids_outside_the_vocabulary_are_refused(prompt):
    model = tiny_model("qwen3")
    assert g.vocab_size(model) == VOCAB
    for name in g.LOOPS:
        with pytest.raises(ValueError, match=r"prompt holds token id -?\d+ at position "
                                             r"\d+, outside the model's vocabulary"):
            g.LOOPS[name].fn(model, prompt, 2)
        with pytest.raises(ValueError, match=rf"vocabulary \[0, ({VOCAB}|2\*\*31)\)"):
            g.stream(model, prompt, 2, loop=name)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        g.teacher_forced_logits(model, prompt)
    ok = list(g.stream(model, [0, VOCAB - 1], 2, loop="sync"))   # both ends are ids
    assert len(ok) == 2
