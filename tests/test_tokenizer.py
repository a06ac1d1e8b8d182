import pytest

from nesso.errors import NessoError
from nesso.tokenizer import Tokenizer, valid_unicode

TEXTS = [
    "The quick brown fox jumps over the lazy dog. 1234567 apples!",
    "Perché la città più bella d'Italia è così affascinante? Caffè, però, è già pronto.",
    "  spaces\tand\nnewlines\n\n  ",
    "emoji 🍕 and symbols € £ ©",
]


def test_llama32_vocab_is_exactly_the_model_size(llama_tokenizer):
    assert llama_tokenizer.vocab_size == 128_256
    assert llama_tokenizer.id_to_token(128_255) == "<|reserved_special_token_246|>"
    assert llama_tokenizer.token_to_id("<|image|>") is None


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_en_it(llama_tokenizer, text):
    ids = llama_tokenizer.encode(text)
    assert llama_tokenizer.decode(ids) == text
    assert max(ids) < 128_000  # plain text never produces special ids


def test_chatml_markers_are_single_ids(llama_tokenizer):
    assert llama_tokenizer.encode("<|im_start|>") == [128_002]
    assert llama_tokenizer.encode("<|im_end|>") == [128_003]
    assert llama_tokenizer.encode("<|im_start|>user\nCiao<|im_end|>")[0] == 128_002
    assert llama_tokenizer.eos_id == llama_tokenizer.pad_id == 128_003
    assert llama_tokenizer.bos_id == 128_000
    assert {128_001, 128_003} <= llama_tokenizer.stop_ids


def test_no_bos_is_added(llama_tokenizer):
    assert llama_tokenizer.encode("Ciao")[0] != 128_000


def test_italian_costs_more_tokens_than_english(llama_tokenizer):
    en = "The weather in Milan is sunny today and the temperature is twenty one degrees."
    it = "Il tempo a Milano oggi è soleggiato e la temperatura è di ventuno gradi."
    assert len(it) / len(llama_tokenizer.encode(it)) < len(en) / len(llama_tokenizer.encode(en))


def test_save_and_load_round_trip(llama_tokenizer, tmp_path):
    llama_tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.vocab_size == 128_256 and again.eos_token == "<|im_end|>"
    for text in TEXTS:
        assert again.encode(text) == llama_tokenizer.encode(text)


def test_matches_transformers_on_the_saved_files(llama_tokenizer, tiny_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    for text in TEXTS + ["<|im_start|>assistant\n<tool_call>\n{}\n</tool_call><|im_end|>"]:
        assert hf(text)["input_ids"] == llama_tokenizer.encode(text)


def test_text_that_is_not_unicode_is_a_clear_error(llama_tokenizer):
    """A lone surrogate (invalid UTF-8 bytes on a command line, a "\\ud800" escape in JSON) is refused with the
    code point and the text before it, not the Rust binding's TypeError."""
    bad = "ciao \udcff e poi"
    for encode in (lambda: llama_tokenizer.encode(bad), lambda: llama_tokenizer.encode_batch(["ok", bad]),
                   lambda: llama_tokenizer.encode_chat([{"role": "user", "content": bad}])):
        with pytest.raises(NessoError, match=r"unpaired surrogate \(U\+DCFF\) after 'ciao '"):
            encode()
    with pytest.raises(TypeError):
        llama_tokenizer.encode(None)
    assert valid_unicode(bad) == "ciao \ufffd e poi" and valid_unicode("città") == "città"
