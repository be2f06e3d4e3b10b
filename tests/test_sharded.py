"""Sharded models in the lab: 2 ranks on the CPU (mlx.launch --backend ring, localhost)."""
from __future__ import annotations

import mlx.core as mx
import pytest

from mlxprof import decode
from mlxprof.decode.optimize import UnsupportedModelError, is_sharded, optimize_model
from mlxprof.lab import models, sharded
from mlxprof.lab.models.sharding import check_heads, shardable

TIMEOUT = 150  # s per launch; each takes ~15 s on 2 busy cores


def _reference(name, n=8, **kw):
    lm = models.load(name, "tiny", 0, ranks=2, **kw)
    return list(decode.stream(lm.model, lm.prompt(8), n, loop="sync"))


def test_shardable_widens_tiny_presets_only_where_needed():
    tiny = models.model_config("qwen3.5-35b-a3b", "tiny")["text_config"]
    wide = shardable(models.model_config("qwen3.5-35b-a3b", "tiny"), 2)["text_config"]
    assert tiny["linear_num_key_heads"] == 1 and wide["linear_num_key_heads"] == 2
    assert wide["moe_intermediate_size"] == 128 and wide["num_experts"] == tiny["num_experts"]
    full = models.model_config("qwen3-8b", "full")
    assert shardable(full, 2) == full


def test_smollm2_heads_do_not_split_over_two_ranks():
    with pytest.raises(ValueError, match="9 attention heads and 3 KV heads.*try 3 ranks"):
        check_heads({"num_attention_heads": 9, "num_key_value_heads": 3}, 2, "smollm2-135m")


def test_fast_refuses_a_sharded_model():
    lm = models.load("qwen3-8b", "tiny", 0)
    assert not is_sharded(lm.model)
    lm.model.shard(mx.distributed.init())  # a group of one still swaps in sharded layers
    assert is_sharded(lm.model)
    with pytest.raises(UnsupportedModelError, match="sharded"):
        optimize_model(lm.model)


def test_shard_needs_a_group_of_two():
    with pytest.raises(ValueError, match="group of 2\\+ ranks"):
        models.load("qwen3-8b", "tiny", 0, shard=mx.distributed.init())


def test_dense_tensor_parallel_same_tokens_and_collectives(tmp_path):
    rs = sharded.run("qwen3-8b", "tiny", out=tmp_path, loop="pipelined", count_ops=True,
                     timeout=TIMEOUT)
    ref = _reference("qwen3-8b")
    assert [r.meta["tokens"] for r in rs.recordings] == [ref, ref]
    n_layers = models.model_config("qwen3-8b", "tiny")["num_hidden_layers"]
    for rec in rs.recordings:
        df = rec.per_token()
        # one all_sum after attention and one after the MLP, per layer and token; the
        # pipelined loop builds token i+1 in step i, so the last step builds none
        mid = df.iloc[1:-1]
        assert (mid["n_coll_all_sum"] == 2 * n_layers).all()
        assert (mid["ops_Sum AllReduce"] == 2 * n_layers).all()
        assert df["n_coll_all_sum"].iloc[-1] == 0
        assert (df["collective_ms"].iloc[:-1] > 0).all()
        assert (df["collective_ms"] <= df["submit_ms"] + df["blocked_ms"] + 1e-9).all()
        assert rec.distributed == {"rank": rec.distributed["rank"], "size": 2, "backend": "ring"}
    trace = rs.chrome_trace()["traceEvents"]
    assert {e["pid"] for e in trace} == {1, 2}
    assert len(rs.skew()) == 8


def test_moe_tensor_and_pipeline_parallel_same_tokens(tmp_path):
    ref = _reference("qwen3.5-35b-a3b", dtype=mx.float32)
    tp = sharded.run("qwen3.5-35b-a3b", "tiny", out=tmp_path, dtype="float32",
                     timeout=TIMEOUT)
    assert [r.meta["tokens"] for r in tp.recordings] == [ref, ref]
    assert set(tp.collectives()["kind"]) == {"all_sum", "all_gather"}
    pp = sharded.run("qwen3.5-35b-a3b", "tiny", out=tmp_path, parallel="pipeline",
                     dtype="float32", timeout=TIMEOUT)
    assert [r.meta["tokens"] for r in pp.recordings] == [ref, ref]
    kinds = pp.collectives().groupby("rank")["kind"].apply(set).to_dict()
    assert kinds == {0: {"recv_like", "all_gather"}, 1: {"send", "all_gather"}}
