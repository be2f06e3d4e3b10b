"""Random-weight mlx-lm models for the optimize tests and experiments.

`random_model(arch, scale, seed)` prefers `mlxprof.lab.models.load(...)` (the
project's synthetic models) for the names it knows and builds the rest here
from mlx-lm's ModelArgs: bf16 random weights quantized like the MLX 4-bit
releases (affine 4-bit, group 64; mlx-lm's quant_predicate puts Qwen3.5's
router gates at 8 bits).

Example:
    >>> m = random_model("llama", "tiny")
    >>> type(m).__module__
    'mlx_lm.models.llama'
"""
from __future__ import annotations

import contextlib
import io

import mlx.core as mx

__all__ = ["CONFIGS", "random_model", "NAMES", "poison_buffer_cache"]

# mlxprof.lab.models names for the synthetic architectures
NAMES = {"qwen3": "qwen3-8b", "qwen3_moe": "qwen3-30b-a3b",
         "qwen3_5_moe": "qwen3.5-35b-a3b"}

_ATTN = dict(rms_norm_eps=1e-6, vocab_size=512, tie_word_embeddings=False,
             max_position_embeddings=4096)
_GDN = dict(linear_num_value_heads=4, linear_num_key_heads=2,
            linear_key_head_dim=64, linear_value_head_dim=64,
            linear_conv_kernel_dim=4, full_attention_interval=4)

CONFIGS = {
    "tiny": {
        "llama": dict(model_type="llama", hidden_size=128, num_hidden_layers=2,
                      intermediate_size=128, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=64, rms_norm_eps=1e-5,
                      vocab_size=512, rope_theta=100000.0,
                      tie_word_embeddings=True),
        "qwen3": dict(model_type="qwen3", hidden_size=64, num_hidden_layers=2,
                      intermediate_size=128, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=64, rope_theta=1e6, **_ATTN),
        "qwen3_moe": dict(model_type="qwen3_moe", hidden_size=64,
                          num_hidden_layers=2, intermediate_size=128,
                          num_attention_heads=2, num_key_value_heads=1,
                          head_dim=64, num_experts=8, num_experts_per_tok=2,
                          decoder_sparse_step=1, mlp_only_layers=[],
                          moe_intermediate_size=64, norm_topk_prob=True,
                          rope_theta=1e6, **_ATTN),
        "qwen3_5_moe": dict(model_type="qwen3_5_moe", text_config=dict(
            model_type="qwen3_5_moe_text", hidden_size=64, num_hidden_layers=4,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64,
            intermediate_size=128, num_experts=8, num_experts_per_tok=2,
            moe_intermediate_size=64, shared_expert_intermediate_size=64,
            rope_parameters={"type": "default", "rope_theta": 1e7,
                             "partial_rotary_factor": 0.25}, **_GDN, **_ATTN)),
        "qwen3_5": dict(model_type="qwen3_5", text_config=dict(
            model_type="qwen3_5_text", hidden_size=64, num_hidden_layers=4,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64,
            intermediate_size=128,
            rope_parameters={"type": "default", "rope_theta": 1e7,
                             "partial_rotary_factor": 0.25}, **_GDN, **_ATTN)),
        "qwen3_next": dict(model_type="qwen3_next", hidden_size=64,
                           num_hidden_layers=4, intermediate_size=128,
                           num_attention_heads=2, num_key_value_heads=1,
                           head_dim=64, num_experts=8, num_experts_per_tok=2,
                           decoder_sparse_step=1, mlp_only_layers=[],
                           moe_intermediate_size=64,
                           shared_expert_intermediate_size=64, rope_theta=1e7,
                           partial_rotary_factor=0.25, norm_topk_prob=True,
                           **_GDN, **_ATTN),
    },
}


def _init(model, seed: int):
    """Seeded random bf16 weights (via mlxprof.lab.models.synthetic if present)."""
    from mlx.utils import tree_flatten, tree_unflatten
    try:
        from mlxprof.lab.models.synthetic import init_weights
        n = len(getattr(model, "layers"))
        init_weights(model, seed, n)
        return
    except ImportError:
        pass
    mx.random.seed(seed)
    new = []
    for path, a in tree_flatten(model.parameters()):
        if path.endswith("A_log"):
            new.append((path, mx.log(mx.random.uniform(1, 16, a.shape))))
        elif a.ndim == 1:
            new.append((path, mx.ones(a.shape, mx.bfloat16)))
        else:
            std = 1.0 if "embed" in path else a.shape[-1] ** -0.5
            new.append((path, (std * mx.random.normal(a.shape)).astype(mx.bfloat16)))
    model.update(tree_unflatten(new))


def build_random(config: dict, seed: int = 0, group_size: int = 64, bits: int = 4):
    """A quantized random-weight mlx-lm model for an mlx-lm config dict."""
    from mlx_lm.utils import _get_classes, quantize_model
    model_cls, args_cls = _get_classes(config)
    model = model_cls(args_cls.from_dict(config))
    _init(model, seed)
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_model(model, config, group_size, bits)
    mx.eval(model.parameters())
    model.eval()
    return model


def random_model(arch: str, scale: str = "tiny", seed: int = 0):
    """A random-weight model of mlx-lm architecture `arch` at `scale`.

    tiny: built here (CONFIGS). small/full: mlxprof.lab.models.load(NAMES[arch]).
    """
    if scale == "tiny" or arch not in NAMES:
        if scale not in CONFIGS or arch not in CONFIGS[scale]:
            raise ValueError(f"no {scale!r} config for {arch!r}")
        return build_random(CONFIGS[scale][arch], seed)
    import mlxprof.lab.models as models
    if hasattr(models, "load"):
        return models.load(NAMES[arch], scale=scale, seed=seed).model
    from mlxprof.lab.models.configs import model_config
    from mlxprof.lab.models.synthetic import build
    return build(model_config(NAMES[arch], scale), seed=seed)[0]


def poison_buffer_cache(max_log2: int = 24) -> None:
    """Fill MLX's buffer cache with NaN buffers of many sizes, then free them.

    The next allocations reuse these buffers, so a kernel that reads memory
    it did not write (an uninitialised output, a read past a view) reads NaN
    instead of an earlier run's values, and its results change.

    Example:
        >>> poison_buffer_cache(8)
    """
    junk = [mx.full((1 << k,), float("nan"), dt) for dt in (mx.bfloat16, mx.float32)
            for k in range(4, max_log2) for _ in range(2)]
    mx.eval(junk)
    del junk
