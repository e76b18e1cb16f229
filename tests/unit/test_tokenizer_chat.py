"""Tokenizer wrapper: chat prompts match mistral-common's (tools included), template errors read
well, and raw text encodes and decodes.

Uses only the tokenizer files bundled with mistral-common; no network.
"""

from __future__ import annotations

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

from mistral_serve.tokenizer import ChatTemplateError, Tokenizer, bundled_tokenizer_file
from support.tokenizer_versions import ALL_VERSIONS


@pytest.fixture(scope="module")
def reference() -> dict[str, MistralTokenizer]:
    """mistral-common on its own, for the expected prompts."""
    return {name: MistralTokenizer.from_file(bundled_tokenizer_file(name)) for name in ALL_VERSIONS}


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
