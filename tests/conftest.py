"""Shared fixtures: tiny random mlx-lm models (seeded), and a guard that no test
leaves MLX patched."""
from __future__ import annotations

import mlx.core as mx
import pytest

from mlxprof import hooks


def _tiny(module_name: str, seed: int):
    import importlib

    mod = importlib.import_module(f"mlx_lm.models.{module_name}")
    common = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                  vocab_size=64, tie_word_embeddings=True, rope_theta=10000.0)
    if module_name == "qwen3":
        common.update(max_position_embeddings=512, head_dim=8)
    mx.random.seed(seed)
    model = mod.Model(mod.ModelArgs(model_type=module_name, **common))
    mx.eval(model.parameters())
    return model


@pytest.fixture(scope="session")
def llama_model():
    """A 2-layer, 32-wide random Llama from mlx-lm's own ModelArgs."""
    return _tiny("llama", seed=0)


@pytest.fixture(scope="session")
def qwen3_model():
    """A 2-layer, 32-wide random Qwen3 from mlx-lm's own ModelArgs."""
    return _tiny("qwen3", seed=1)


@pytest.fixture(params=["llama", "qwen3"])
def tiny_model(request):
    return request.getfixturevalue(f"{request.param}_model")


@pytest.fixture
def prompt():
    return mx.array([1, 5, 9, 3, 7], dtype=mx.int32)


@pytest.fixture(autouse=True)
def _no_leaked_hooks():
    yield
    leaked = hooks.is_installed()
    if leaked:
        hooks.uninstall()
    assert not leaked, "a test left MLX patched"


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M exported once as an mlx-lm model folder (float32: fast on CPU).

    The weights are fetched if missing; without them (offline) the test is skipped.
    """
    from mlxprof.lab import models

    out = tmp_path_factory.mktemp("smollm2") / "model"
    try:
        return models.export("smollm2", out, dtype="float32")
    except models.WeightsNotFound as err:
        pytest.skip(f"SmolLM2 weights unavailable: {err}")
