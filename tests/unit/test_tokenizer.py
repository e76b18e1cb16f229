"""Tokenizer wrapper: chat prompts match mistral-common, errors read well, streaming is exact.

Uses only the tokenizer files bundled with mistral-common; no network.
"""

from __future__ import annotations

import pickle
import random
import re
import shutil
from pathlib import Path

import pytest
from mistral_common.protocol.instruct.chunk import TextChunk
from mistral_common.protocol.instruct.messages import (
    AssistantMessage,
    SystemMessage,
    ToolMessage,
    UserMessage,
)
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.tool_calls import Function, FunctionCall, Tool, ToolCall
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from mistral_serve.tokenizer import (
    ChatTemplateError,
    IncrementalDetokenizer,
    Tokenizer,
    TokenizerError,
    bundled_tokenizer_file,
    find_tokenizer_file,
)

SPM_VERSIONS = ["v1", "v3"]
ALL_VERSIONS = ["v1", "v3", "tekken_240718"]
BYTE_PIECE = re.compile(r"^<0x[0-9A-F]{2}>$")


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    return {name: Tokenizer.from_file(bundled_tokenizer_file(name)) for name in ALL_VERSIONS}


@pytest.fixture(scope="module")
def reference() -> dict[str, MistralTokenizer]:
    """mistral-common on its own, for the expected prompts."""
    return {name: MistralTokenizer.from_file(bundled_tokenizer_file(name)) for name in ALL_VERSIONS}


# --- finding and loading files -------------------------------------------------------------


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_find_tokenizer_file_preference(tmp_path: Path) -> None:
    assert find_tokenizer_file(tmp_path) is None
    assert find_tokenizer_file(tmp_path / "missing") is None

    _touch(tmp_path, "tokenizer.model", "config.json", "consolidated.safetensors")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model"

    _touch(tmp_path, "tokenizer.model.v3")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model.v3"

    _touch(tmp_path, "mistral_instruct_tokenizer_241114.model.v7", "tokenizer.model.v7m1")
    assert find_tokenizer_file(tmp_path) == tmp_path / "mistral_instruct_tokenizer_241114.model.v7"

    # Versions compare as numbers: v11 beats v7 although "v11" < "v7" as text.
    _touch(tmp_path, "tokenizer.model.v11")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model.v11"

    _touch(tmp_path, "tekken.json")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tekken.json"


def test_find_tokenizer_file_ignores_folders(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model.v3").mkdir()
    assert find_tokenizer_file(tmp_path) is None


def test_bundled_tokenizer_file() -> None:
    assert bundled_tokenizer_file("v1").name == "tokenizer.model.v1"
    assert bundled_tokenizer_file("v3").name == "mistral_instruct_tokenizer_240323.model.v3"
    assert bundled_tokenizer_file("v3").is_file()
    with pytest.raises(ValueError, match="v99"):
        bundled_tokenizer_file("v99")


def test_tokenizer_properties(tokenizers: dict[str, Tokenizer]) -> None:
    v1, v3, tekken = tokenizers["v1"], tokenizers["v3"], tokenizers["tekken_240718"]
    assert (v1.version, v1.vocab_size, v1.bos_id, v1.eos_id, v1.supports_tools) == ("v1", 32000, 1, 2, False)
    assert (v3.version, v3.vocab_size, v3.bos_id, v3.eos_id, v3.supports_tools) == ("v3", 32768, 1, 2, True)
    assert (tekken.version, tekken.vocab_size, tekken.supports_tools) == ("v3", 131072, True)
    assert v3.path == bundled_tokenizer_file("v3")
    assert v3.is_control(v3.bos_id) and v3.id_to_piece(v3.bos_id) == "<s>"
    assert not v3.is_control(v3.encode("hi", bos=False)[0])


def test_from_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "tokenizer.model.v3"
    with pytest.raises(TokenizerError, match=re.escape(str(missing))):
        Tokenizer.from_file(missing)


@pytest.mark.parametrize("name", ["tokenizer.model", "tokenizer.model.v3", "tekken.json", "vocab.txt"])
def test_from_file_garbage(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00this is not a tokenizer{")
    with pytest.raises(TokenizerError, match=re.escape(str(path))):
        Tokenizer.from_file(path)


def test_bare_tokenizer_model_with_v3_vocabulary_loads_as_v3(
        tmp_path: Path, tokenizers: dict[str, Tokenizer]) -> None:
    bare = tmp_path / "tokenizer.model"
    shutil.copyfile(bundled_tokenizer_file("v3"), bare)
    tok = Tokenizer.from_file(bare)
    assert tok.version == "v3" and tok.supports_tools
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = tok.encode_chat(conversation)
    assert prompt == tokenizers["v3"].encode_chat(conversation)
    assert prompt[1] == 3 and tok.is_control(3)  # the [INST] control token, not "[INST]" as text
    # Pickling (e.g. to worker processes) keeps the recognised version.
    assert pickle.loads(pickle.dumps(tok)).version == "v3"


def test_bare_tokenizer_model_with_v1_vocabulary_stays_v1(tmp_path: Path) -> None:
    bare = tmp_path / "tokenizer.model"
    shutil.copyfile(bundled_tokenizer_file("v1"), bare)
    assert Tokenizer.from_file(bare).version == "v1"


# --- chat prompts ---------------------------------------------------------------------------

# (OpenAI-style messages, the same conversation as mistral-common message objects)
CONVERSATIONS = {
    "single user": (
        [{"role": "user", "content": "Hello, who are you?"}],
        [UserMessage(content="Hello, who are you?")],
    ),
    "system and user": (
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}],
        [SystemMessage(content="You are terse."), UserMessage(content="Hi!")],
    ),
    "developer is system": (
        [{"role": "developer", "content": "You are terse."}, {"role": "user", "content": "Hi!"}],
        [SystemMessage(content="You are terse."), UserMessage(content="Hi!")],
    ),
    "multi-turn": (
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "And times 3?", "name": "alice"}],
        [UserMessage(content="2+2?"), AssistantMessage(content="4"), UserMessage(content="And times 3?")],
    ),
    "two system messages": (
        [{"role": "system", "content": "Rule one."}, {"role": "user", "content": "a"},
         {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
         {"role": "system", "content": "Rule two."}, {"role": "user", "content": "d"}],
        [SystemMessage(content="Rule one."), UserMessage(content="a"), AssistantMessage(content="b"),
         UserMessage(content="c"), SystemMessage(content="Rule two."), UserMessage(content="d")],
    ),
    "text parts": (
        [{"role": "user", "content": [{"type": "text", "text": "First part."},
                                      {"type": "text", "text": "Second part."}]}],
        [UserMessage(content=[TextChunk(text="First part."), TextChunk(text="Second part.")])],
    ),
    "unicode": (
        [{"role": "user", "content": "  Crème brûlée 世界 😀\n\nnew paragraph"}],
        [UserMessage(content="  Crème brûlée 世界 😀\n\nnew paragraph")],
    ),
}


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
def test_encode_chat_matches_mistral_common(case: str, version: str, tokenizers: dict[str, Tokenizer],
                                            reference: dict[str, MistralTokenizer]) -> None:
    openai_messages, mistral_messages = CONVERSATIONS[case]
    expected = reference[version].encode_chat_completion(
        ChatCompletionRequest(messages=mistral_messages)).tokens
    assert tokenizers[version].encode_chat(openai_messages) == expected


def test_encode_chat_with_tools_matches_mistral_common(
        tokenizers: dict[str, Tokenizer], reference: dict[str, MistralTokenizer]) -> None:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    openai_messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call00001", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call00001", "name": "weather", "content": "sunny"},
    ]
    openai_tools = [{"type": "function", "function": {
        "name": "weather", "description": "Current weather", "parameters": parameters}}]
    request = ChatCompletionRequest(
        messages=[
            UserMessage(content="Weather in Paris?"),
            AssistantMessage(tool_calls=[ToolCall(id="call00001", function=FunctionCall(
                name="weather", arguments='{"city": "Paris"}'))]),
            ToolMessage(tool_call_id="call00001", name="weather", content="sunny"),
        ],
        tools=[Tool(function=Function(name="weather", description="Current weather", parameters=parameters))],
    )
    expected = reference["v3"].encode_chat_completion(request).tokens
    assert tokenizers["v3"].encode_chat(openai_messages, tools=openai_tools) == expected


# (messages, words the message must contain)
BAD_CONVERSATIONS = {
    "starts with assistant": (
        [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Hello"}],
        "must start with a user or system message"),
    "lone assistant": ([{"role": "assistant", "content": "Hi"}], "must start with a user or system message"),
    "empty": ([], "at least one message"),
    "ends with assistant": (
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "last message must be a user or tool message"),
    "image part": (
        [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                      {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
        "'image_url'"),
    "unknown role": ([{"role": "robot", "content": "beep"}], "unknown role 'robot'"),
    "user without content": ([{"role": "user", "content": None}], "content must be a string"),
    "role order": (
        [{"role": "system", "content": "s"}, {"role": "tool", "tool_call_id": "abcdefghi", "content": "1"}],
        "Unexpected role 'tool' after role 'system'"),
    "bad tool call": (
        [{"role": "user", "content": "x"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "abcdefghi", "type": "function", "function": {"name": 7}}]},
         {"role": "tool", "tool_call_id": "abcdefghi", "content": "1"}],
        "function.name: Input should be a valid string"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONVERSATIONS))
def test_encode_chat_rejects(case: str, tokenizers: dict[str, Tokenizer]) -> None:
    messages, words = BAD_CONVERSATIONS[case]
    with pytest.raises(ChatTemplateError) as caught:
        tokenizers["v3"].encode_chat(messages)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message and "pydantic" not in message


def test_encode_chat_rejects_tools_on_v1(tokenizers: dict[str, Tokenizer]) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(ChatTemplateError, match="does not support tools"):
        tokenizers["v1"].encode_chat([{"role": "user", "content": "hi"}], tools=tools)
    with pytest.raises(ChatTemplateError, match="does not support tools"):
        tokenizers["v1"].encode_chat([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "1"}])


def test_encode_chat_leaves_messages_alone(tokenizers: dict[str, Tokenizer]) -> None:
    messages = [{"role": "developer", "content": "s"}, {"role": "user", "content": "u"}]
    tokenizers["v3"].encode_chat(messages)
    assert messages[0]["role"] == "developer"


# --- raw text -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_encode_decode(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    ids = tok.encode("Hello world", bos=True)
    assert ids[0] == tok.bos_id and tok.encode("Hello world", bos=False) == ids[1:]
    assert tok.decode(ids + [tok.eos_id]) == "Hello world"


# --- streaming ------------------------------------------------------------------------------


def _stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    detok = tok.detokenizer()
    pieces = [detok.add(i) for i in ids]
    pieces.append(detok.flush())
    assert detok.token_ids == ids
    assert detok.text == "".join(pieces)
    return pieces


def _check_stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    pieces = _stream(tok, ids)
    full = tok.decode(ids)
    assert "".join(pieces) == full
    for piece in pieces:
        assert isinstance(piece, str)
        piece.encode("utf-8")  # no lone surrogates: every piece is whole characters
        if "\ufffd" not in full:
            assert "\ufffd" not in piece
    return pieces


TEXTS = [
    "Hello world",
    "😀👍🏽 emoji with a skin tone, 👨‍👩‍👧 and a family",
    "世界 and 日本語のテキスト",
    "Crème brûlée, naïve café, Ærøskøbing, Ελληνικά, Привет",
    "multiple   spaces  and\ttabs",
    "lines\nand\n\nblank lines\n",
    "   leading spaces",
    " one leading space",
    "𠜎𠜱𠝹 rare CJK, 龘 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "def f(x):\n    return x  # code\n",
]


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("text", TEXTS)
def test_detokenizer_texts(version: str, text: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    ids = tok.encode(text, bos=True) + [tok.eos_id]
    _check_stream(tok, ids)
    # Generated text usually continues after a prompt, so the first piece is not at the start.
    _check_stream(tok, tok.encode("Answer:", bos=True) + tok.encode(text, bos=False))


@pytest.mark.parametrize("version", SPM_VERSIONS)
def test_detokenizer_holds_back_byte_fallback(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    ids = tok.encode("a𠜎b", bos=False)
    pieces = [tok.id_to_piece(i) for i in ids]
    assert sum(bool(BYTE_PIECE.match(p)) for p in pieces) == 4  # the character is 4 byte pieces
    detok = tok.detokenizer()
    out = [detok.add(i) for i in ids]
    first_byte = next(k for k, p in enumerate(pieces) if BYTE_PIECE.match(p))
    # Nothing while the character is incomplete, then all of it at once.
    assert out[first_byte:first_byte + 3] == ["", "", ""]
    assert "𠜎" in out[first_byte + 3]
    assert "".join(out) + detok.flush() == tok.decode(ids) == "a𠜎b"


@pytest.mark.parametrize("version", SPM_VERSIONS)
def test_detokenizer_real_replacement_characters(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    byte = {int(piece[3:5], 16): i for i in range(tok.vocab_size)
            if BYTE_PIECE.match(piece := tok.id_to_piece(i))}
    word = tok.encode("word", bos=False)
    replacement_piece = next(i for i in range(tok.vocab_size) if tok.id_to_piece(i) == "\ufffd")

    detok = tok.detokenizer()
    assert detok.add(word[0]) == "word"
    # The vocabulary's own U+FFFD and bytes that can never form a character are real output:
    # they are released at once, not held back.
    assert detok.add(replacement_piece) == "\ufffd"
    assert detok.add(byte[0x80]) == "\ufffd"  # a continuation byte with no lead byte
    assert detok.add(byte[0xE4]) == ""        # may still become a character...
    assert detok.add(byte[0x41]) == "\ufffdA"  # ...but "A" is not a continuation byte
    assert detok.add(byte[0xE4]) == ""
    assert detok.add(byte[0xB8]) == ""
    assert detok.flush() == tok.decode([byte[0xE4], byte[0xB8]])  # cut off: flushed as is
    assert detok.text == tok.decode(detok.token_ids)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_control_tokens_and_spaces(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    hello, world = tok.encode("Hello", bos=False), tok.encode(" world", bos=False)
    inst = 3  # [INST] in v3 and tekken; an ordinary piece in v1
    for ids in ([tok.bos_id, *hello, tok.eos_id, *world],
                [tok.bos_id, tok.bos_id, *world, tok.eos_id, tok.eos_id, *world],
                [*hello, inst, inst, inst, *world, tok.eos_id],
                [tok.eos_id, *world, *world]):
        _check_stream(tok, ids)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_random_ids(version: str, tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[version]
    rng = random.Random(20240611)
    controls = [i for i in range(1000) if tok.is_control(i)]
    if tok.vocab_size == 131072:
        byte_ids = list(range(1000, 1256))  # tekken: the 256 single-byte tokens follow the specials
        assert tok.decode([1000 + ord("A")]) == "A" and tok.is_control(999)
    else:
        byte_ids = [i for i in range(tok.vocab_size) if BYTE_PIECE.match(tok.id_to_piece(i))]
    spaces = [i for i in range(tok.vocab_size) if tok.id_to_piece(i) in ("▁", "▁▁", " ")]
    assert len(byte_ids) == 256 and controls and spaces

    for trial in range(40):
        length = rng.randint(50, 400)
        if trial % 2 == 0:
            # Uniform over the whole vocabulary (byte and control tokens included).
            ids = [rng.randrange(tok.vocab_size) for _ in range(length)]
        else:
            # Weighted towards the hard cases: bytes, control tokens, bare spaces.
            pools = [byte_ids, controls, spaces, range(tok.vocab_size)]
            ids = [rng.choice(rng.choices(pools, weights=[4, 2, 1, 3])[0]) for _ in range(length)]
        _check_stream(tok, ids)


def test_detokenizer_flush_twice_and_empty(tokenizers: dict[str, Tokenizer]) -> None:
    detok = IncrementalDetokenizer(tokenizers["v3"])
    assert detok.flush() == "" and detok.text == "" and detok.token_ids == []
    assert detok.add(tokenizers["v3"].bos_id) == ""
    assert detok.flush() == "" and detok.flush() == ""


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_detokenizer_window_stays_short(version: str, tokenizers: dict[str, Tokenizer],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Streaming must cost the same per token however long the answer: runs of tokens that decode
    # to nothing on their own (control tokens, bare spaces) must not make the window grow.
    tok = tokenizers[version]
    space = next(i for i in range(tok.vocab_size) if tok.id_to_piece(i) in ("▁", " "))
    ids = [*tok.encode("Hi", bos=True), *[tok.eos_id] * 300, *[space] * 300,
           *tok.encode(" there", bos=False), *[tok.bos_id, space] * 300]
    expected = tok.decode(ids)

    longest = 0
    decode = tok.decode

    def measured(some_ids: list[int]) -> str:
        nonlocal longest
        longest = max(longest, len(some_ids))
        return decode(some_ids)

    monkeypatch.setattr(tok, "decode", measured)
    detok = tok.detokenizer()
    text = "".join(detok.add(i) for i in ids) + detok.flush()
    assert text == expected
    assert longest <= 8


@pytest.mark.parametrize("version", ["v1", "v3"])
@pytest.mark.parametrize("prompt, continuation", [
    ("Hello", " world, and more"), ("Once upon a", " time 世界 😀"), ("Numbers: 1", "23 456"),
])
def test_detokenizer_with_context_decodes_a_continuation_in_place(version, prompt, continuation):
    """A raw completion continues its prompt: the first piece keeps its leading space, and the
    pieces are exactly what the full text adds to the prompt's text."""
    tok = Tokenizer.from_file(bundled_tokenizer_file(version))
    prompt_ids = tok.encode(prompt, bos=True)
    full_ids = tok.encode(prompt + continuation, bos=True)
    assert full_ids[:len(prompt_ids)] == prompt_ids or pytest.skip("tokenization splits differently")
    output = full_ids[len(prompt_ids):]
    detok = tok.detokenizer(prompt_ids)
    pieces = [detok.add(t) for t in output] + [detok.flush()]
    assert "".join(pieces) == tok.decode(full_ids)[len(tok.decode(prompt_ids)):]
    assert tok.detokenizer().add(output[0]) != pieces[0] or not pieces[0].startswith(" ")
