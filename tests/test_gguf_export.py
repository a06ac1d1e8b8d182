"""GGUF export: nesso -> GGUF -> nesso round trips, and parity with llama.cpp (through llama-cpp-python) on the
exported files: tokenization, next-token logits, greedy decoding and the chat template with tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nesso.cli import main
from nesso.errors import NessoError
from nesso.gguf_export import export_gguf
from nesso.gguf_io import _reader, load_gguf, permute_rope_rows, read_tokenizer, unpermute_rope_rows

TEXTS = [
    "The quick brown fox jumps over the lazy dog, 12345 times in 2024!",
    "Perché l'università è così cara? Città, caffè e più: 3,14 € al giorno.",
    "<|im_start|>user\nCiao, come stai?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"a\": 1}\n</tool_call>",
    "  spazi   multipli\n\n\tcode: def f(x): return x**2  # ok",
]
# F16 keeps an 11-bit significand: unit roundoff u = 2**-11. llama.cpp rounds the weights and, for F16 matmuls,
# the activations too, so each logit carries an error of a few u times the logits' scale; we measured 1.3-2.8 u
# (tiny random model, SmolLM2-135M). 8 u leaves room for other CPUs' summation orders while a real mistake
# (q/k layout, rope base, eps, tensor mix-up) moves logits by a sizeable fraction of their range.
U16 = 2.0**-11
F16_TOL = 8 * U16
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city (°C or °F) & a short summary.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Roma"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]
CONVERSATION = [
    {"role": "system", "content": "Sei un assistente utile. Rispondi in italiano."},
    {"role": "user", "content": "Che tempo fa a Roma? <b>Grazie</b>"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\": \"Roma\", \"unit\": \"celsius\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"summary\": \"sereno\"}"},
]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model, llama_tokenizer):
    """Exports of the conftest tiny model (real Llama-3.2 vocabulary), made on first use per type."""
    out, cache = tmp_path_factory.mktemp("gguf"), {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = export_gguf(tiny_model, llama_tokenizer, out / f"tiny-{kind}.gguf", kind).path
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def smol_f16(tmp_path_factory, smollm):
    return export_gguf(smollm.model, smollm.tokenizer, tmp_path_factory.mktemp("smol") / "smol.gguf", "f16").path


def _logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].float().numpy()


def _assert_state_dicts(a, b, exact: bool, bound: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if exact:
            assert torch.equal(sa[k], sb[k]), k
        else:
            rel = ((sa[k] - sb[k]).norm() / sa[k].norm()).item()
            assert rel <= bound, (k, rel)


# ---- layout and round trips ----------------------------------------------------------------------

def test_permute_rope_rows_is_llama_cpp_layout_and_round_trips():
    rng = np.random.default_rng(0)
    for n_head, head_dim, cols in ((4, 16, 8), (3, 64, 5), (1, 2, 3)):
        w = rng.standard_normal((n_head * head_dim, cols)).astype(np.float32)
        p = permute_rope_rows(w, n_head)
        assert np.array_equal(unpermute_rope_rows(p, n_head), w)
        if head_dim > 2:
            assert not np.array_equal(p, w)
    # Direction: rotate-half RoPE on W x equals interleaved-pair RoPE (llama.cpp's NORM mode) on permuted W x.
    head_dim, pos = 8, 5.0
    w = rng.standard_normal((head_dim, 6))
    x = rng.standard_normal(6)
    theta = pos * 10_000.0 ** (-np.arange(0, head_dim, 2) / head_dim)
    cos, sin = np.cos(theta), np.sin(theta)
    q = w @ x
    half = head_dim // 2
    rot_half = np.concatenate([q[:half] * cos - q[half:] * sin, q[half:] * cos + q[:half] * sin])
    qp = permute_rope_rows(w, 1) @ x
    inter = np.empty_like(qp)
    inter[0::2] = qp[0::2] * cos - qp[1::2] * sin
    inter[1::2] = qp[0::2] * sin + qp[1::2] * cos
    np.testing.assert_allclose(inter, permute_rope_rows(rot_half[:, None], 1)[:, 0], atol=1e-12)


@pytest.mark.parametrize("kind", ["f16", "f32"])
def test_float_round_trip_is_bitwise(tiny_gguf, tiny_model, kind):
    model, _ = load_gguf(tiny_gguf(kind))
    ref = tiny_model
    if kind == "f16":
        ref = type(tiny_model)(tiny_model.config)
        ref.load_state_dict({k: v.half().float() for k, v in tiny_model.state_dict().items()})
    _assert_state_dicts(ref, model, exact=True)
    assert model.config.__dict__ == tiny_model.config.__dict__


@pytest.mark.parametrize("kind,bound", [("q8_0", 0.008), ("q4_0", 0.11)])
def test_quantized_round_trip_error_is_bounded(tiny_gguf, tiny_model, kind, bound):
    # Gaussian weights in blocks of 32 (max ~2.1 sigma): a uniform rounding step of max/127 (Q8_0) or max/8
    # (Q4_0) gives a relative RMS error near 0.005 and 0.08; norms are F32, so exact.
    reader = _reader(tiny_gguf(kind))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "Q8_0"  # tied: it is also the output head
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert types["blk.1.ffn_down.weight"] == kind.upper()
    model, _ = load_gguf(tiny_gguf(kind))
    _assert_state_dicts(tiny_model, model, exact=False, bound=bound)


def test_metadata_is_what_llama_cpp_reads(tiny_gguf, tiny_model, llama_tokenizer):
    reader = _reader(tiny_gguf("f16"))
    f = {k: v.contents() for k, v in reader.fields.items()}
    cfg = tiny_model.config
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 1
    assert (f["llama.embedding_length"], f["llama.block_count"], f["llama.feed_forward_length"]) == (64, 2, 160)
    assert (f["llama.attention.head_count"], f["llama.attention.head_count_kv"]) == (4, 2)
    assert f["llama.rope.dimension_count"] == f["llama.attention.key_length"] == 16
    assert f["llama.context_length"] == 256 and f["llama.vocab_size"] == 128_256
    assert f["llama.rope.freq_base"] == cfg.rope_theta
    assert f["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(cfg.rms_norm_eps)
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "llama-bpe"
    assert len(tokens) == len(types) == 128_256 and len(f["tokenizer.ggml.merges"]) > 200_000
    assert tokens[f["tokenizer.ggml.eos_token_id"]] == "<|im_end|>" == tokens[f["tokenizer.ggml.padding_token_id"]]
    assert tokens[f["tokenizer.ggml.bos_token_id"]] == "<|begin_of_text|>"
    assert types[tokens.index("<|im_start|>")] == types[tokens.index("<|im_end|>")] == 3  # CONTROL
    assert types[tokens.index("Hello")] == 1
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.chat_template"] == llama_tokenizer.chat_template
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings


def test_tokenizers_read_back_encode_identically(tiny_gguf, llama_tokenizer, smol_f16, smollm):
    assert _reader(smol_f16).fields["tokenizer.ggml.pre"].contents() == "smollm"
    for path, original in ((tiny_gguf("f16"), llama_tokenizer), (smol_f16, smollm.tokenizer)):
        back = read_tokenizer(_reader(path))
        assert (back.eos_token, back.pad_token, back.bos_token) == (
            original.eos_token, original.pad_token, original.bos_token)
        for text in TEXTS:
            ids = original.encode(text)
            assert back.encode(text) == ids, text
            assert back.decode(ids) == text
        chat = original.apply_chat_template(CONVERSATION, TOOLS, add_generation_prompt=True)
        assert back.encode(chat) == original.encode(chat)


def test_odd_row_lengths_stay_f16_and_untied_head_is_written(tmp_path, llama_tokenizer):
    from nesso.config import ModelConfig
    from nesso.model import build_model

    cfg = ModelConfig(hidden_size=48, intermediate_size=96, num_layers=1, num_heads=3, num_kv_heads=1, head_dim=16,
                      max_position_embeddings=64, tie_word_embeddings=False)
    model = build_model(cfg, seed=3)
    summary = export_gguf(model, llama_tokenizer, tmp_path / "odd.gguf", "q4_0")
    types = {t.name: t.tensor_type.name for t in _reader(summary.path).tensors}
    assert types["token_embd.weight"] == types["output.weight"] == "F16"  # 48-wide rows: no 32-blocks
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.ffn_down.weight"] == "Q4_0"  # 96 = 3 x 32
    back, _ = load_gguf(summary.path)
    assert not back.config.tie_word_embeddings
    assert torch.equal(back.lm_head.weight, model.lm_head.weight.half().float())


def _rope_scaled(tiny_model):
    from nesso.model import build_model

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    model = build_model(tiny_model.config.replace(rope_scaling=scaling), seed=2)
    with torch.no_grad():  # sharper attention than random init gives, so that positions matter more
        for layer in model.layers:
            layer.self_attn.q_proj.weight.mul_(4)
            layer.self_attn.k_proj.weight.mul_(4)
    return model


def test_llama3_rope_scaling_round_trips(tmp_path, tiny_model, llama_tokenizer):
    model = _rope_scaled(tiny_model)
    path = export_gguf(model, llama_tokenizer, tmp_path / "scaled.gguf", "f32").path
    assert "rope_freqs.weight" in {t.name for t in _reader(path).tensors}
    back, _ = load_gguf(path)
    assert back.config.rope_scaling == model.config.rope_scaling
    ids = llama_tokenizer.encode(TEXTS[0] + TEXTS[1])
    np.testing.assert_array_equal(_logits(back, ids), _logits(model, ids))


def test_bad_exports_are_clear_errors(tmp_path, tiny_model, llama_tokenizer, smollm):
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers

    from nesso.tokenizer import Tokenizer

    with pytest.raises(NessoError, match="only 49152 embedding rows"):
        export_gguf(smollm.model, llama_tokenizer, tmp_path / "x.gguf")
    with pytest.raises(NessoError, match="is a directory"):
        export_gguf(tiny_model, llama_tokenizer, tmp_path)
    with pytest.raises(NessoError, match="unknown GGUF type 'q5_k'"):
        export_gguf(tiny_model, llama_tokenizer, tmp_path / "x.gguf", "q5_k")
    backend = Backend(models.BPE(vocab={"a": 0, "b": 1, "<|im_end|>": 2}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(NessoError, match="not one that llama.cpp reproduces"):
        export_gguf(tiny_model, Tokenizer(backend, bos_token=None, eos_token="<|im_end|>"), tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp"))
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(NessoError, match="exists and is not a GGUF file"):
        export_gguf(tiny_model, llama_tokenizer, notes)
    assert notes.read_text() == "mine"
    with pytest.raises(NessoError, match="could not write"):
        export_gguf(tiny_model, llama_tokenizer, notes / "x.gguf")
    again = export_gguf(tiny_model, llama_tokenizer, tmp_path / "x.gguf", "f32").path  # a GGUF is overwritten
    assert export_gguf(tiny_model, llama_tokenizer, again, "q8_0").path == again


def test_truncated_file_is_a_clear_error(tiny_gguf, tmp_path):
    data = tiny_gguf("q8_0").read_bytes()
    for cut in (len(data) // 2, 5_000_000, 40):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(NessoError, match="not a readable GGUF file"):
            load_gguf(bad)


def test_cli_exports_a_loadable_file(tmp_path, capsys, tiny_dir):
    from nesso.loader import load_model

    out = tmp_path / "nano.Q8_0.gguf"
    assert main(["export", "gguf", "nesso-nano", "--out", str(out), "--type", "q8_0"]) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = load_model(str(out))
    assert loaded.model.config.hidden_size == 64 and loaded.tokenizer.eos_token == "<|im_end|>"
    out = tmp_path / "sub" / "tiny.gguf"  # an HF directory in, a missing parent directory made
    assert main(["export", "gguf", str(tiny_dir), "--out", str(out), "--type", "q4_0", "--name", "tiny"]) == 0
    assert "q4_0" in capsys.readouterr().out
    assert _reader(out).fields["general.name"].contents() == "tiny"
    assert main(["export", "gguf", "no-such-model", "--out", str(tmp_path / "y.gguf")]) == 2
    assert "cannot find model" in capsys.readouterr().err
    assert main(["export", "gguf", "no-such-model", "--out", str(tmp_path / "y.gguf"), "--type", "q5"]) == 2
    assert "unknown GGUF type 'q5'; use one of f16, q8_0, q4_0, f32" in capsys.readouterr().err
    assert main(["export", "gguf", "nesso-nano", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


# ---- llama.cpp parity ----------------------------------------------------------------------------

def _llama(path, n_ctx: int = 256, **kw):
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False,
                           n_threads=1, seed=0, **kw)


def _llama_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def _max_rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def test_llama_cpp_tokenizes_and_scores_the_tiny_model(tiny_gguf, tiny_model, llama_tokenizer):
    ids = llama_tokenizer.encode(" ".join(TEXTS))
    llm = _llama(tiny_gguf("f16"))
    try:
        for text in TEXTS:
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == llama_tokenizer.encode(text), text
        assert llm.token_eos() == llama_tokenizer.eos_id and llm.token_bos() == llama_tokenizer.bos_id
        assert _max_rel(_llama_logits(llm, ids), _logits(tiny_model, ids)) <= F16_TOL
    finally:
        llm.close()


@pytest.mark.parametrize("kind", ["q8_0", "q4_0"])
def test_llama_cpp_reads_quantized_blocks_like_nesso(tiny_gguf, llama_tokenizer, kind):
    # Against nesso running the same dequantized weights, only llama.cpp's Q8_0 rounding of the activations
    # in quantized matmuls remains (measured 0.7% of the logit range): 2% bounds it.
    path = tiny_gguf(kind)
    back, _ = load_gguf(path)
    ids = llama_tokenizer.encode(" ".join(TEXTS))
    llm = _llama(path)
    try:
        assert _max_rel(_llama_logits(llm, ids), _logits(back, ids)) <= 0.02
    finally:
        llm.close()


def test_llama_cpp_applies_rope_layout_and_llama3_scaling(tmp_path, tiny_model, llama_tokenizer, monkeypatch):
    model = _rope_scaled(tiny_model)
    ids = llama_tokenizer.encode(" ".join(TEXTS))
    ref = _logits(model, ids)
    unscaled = type(model)(model.config.replace(rope_scaling=None))
    unscaled.load_state_dict(model.state_dict())
    assert _max_rel(_logits(unscaled, ids), ref) > 20 * F16_TOL  # the scaling matters at these positions
    path = export_gguf(model, llama_tokenizer, tmp_path / "scaled.gguf", "f16").path
    llm = _llama(path)
    try:
        assert _max_rel(_llama_logits(llm, ids), ref) <= F16_TOL
    finally:
        llm.close()
    # A file written without llama.cpp's q/k row order fails the same check, so the tolerance has teeth.
    monkeypatch.setattr("nesso.gguf_export.permute_rope_rows", lambda w, n_head: w)
    wrong = export_gguf(model, llama_tokenizer, tmp_path / "unpermuted.gguf", "f16").path
    llm = _llama(wrong)
    try:
        assert _max_rel(_llama_logits(llm, ids), ref) > 20 * F16_TOL
    finally:
        llm.close()


def test_llama_cpp_matches_the_embedded_model(smol_f16, smollm):
    tok = smollm.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "Write a short story about a robot who paints."}],
                                     add_generation_prompt=True)
    ids = tok.encode(prompt)
    llm = _llama(smol_f16, n_ctx=128)
    try:
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
        greedy = []
        llm.eval(ids)
        for _ in range(32):
            greedy.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([greedy[-1]])
        ours = _logits(smollm.model, ids + greedy)
        assert _max_rel(_llama_logits(llm, ids + greedy), ours) <= F16_TOL
    finally:
        llm.close()
    # nesso's greedy pick after every prefix of llama.cpp's greedy path is llama.cpp's next token, so nesso's own
    # greedy decoding of these 32 tokens is the same sequence (one forward pass instead of 32 decode steps).
    assert ours[len(ids) - 1:-1].argmax(-1).tolist() == greedy, tok.decode(greedy)
    assert "robot" in tok.decode(greedy).lower()


def test_llama_cpp_chat_completion_uses_the_file_template(smol_f16):
    llm = _llama(smol_f16, n_ctx=256)
    try:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                         temperature=0.0, max_tokens=24)
    finally:
        llm.close()
    choice = out["choices"][0]
    assert "Paris" in choice["message"]["content"] and choice["finish_reason"] == "stop"  # stopped at <|im_end|>


def test_llama_cpp_renders_the_chat_template_with_tools(smol_f16, tiny_gguf, smollm, llama_tokenizer):
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    for path, tok in ((smol_f16, smollm.tokenizer), (tiny_gguf("f16"), llama_tokenizer)):
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        try:
            # llama-cpp-python picks the file's template for create_chat_completion ...
            assert llm.chat_format == "chat_template.default"
            template = llm.metadata["tokenizer.chat_template"]
            eos = llm.detokenize([llm.token_eos()], special=True).decode()
            assert eos == "<|im_end|>"
            # ... and renders it with this formatter (built as Llama.__init__ builds it).
            fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token="", stop_token_ids=[llm.token_eos()])
            rendered = fmt(messages=json.loads(json.dumps(CONVERSATION)), tools=TOOLS)
            expected = tok.apply_chat_template(CONVERSATION, TOOLS, add_generation_prompt=True)
            assert rendered.prompt == expected
            assert rendered.stop == ["<|im_end|>"]
            assert "<tool_call>\n{\"name\": \"get_weather\"" in expected and "<tool_response>" in expected
            assert llm.tokenize(expected.encode(), add_bos=False, special=True) == tok.encode(expected)
        finally:
            llm.close()
