"""Conversation shapes Mistral's format does not take as sent, through the real server and the
official clients: pydantic-ai's output retry (a system message after an answer), two messages of
one role in a row, an assistant message to continue (Mistral's "prefix", vLLM's
continue_final_message, Anthropic's prefill), and vLLM's add_generation_prompt.

The demo's weights are random, but greedy decoding is deterministic and the answer depends on
every prompt token: a shape mapped to the wrong prompt answers differently from its mapping
sent as such, and a continuation that is not the prompt's own continuation differs from the
plain completion of the same prompt ids.
"""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import pytest
from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from openai import BadRequestError, OpenAI

from mistral_serve.random_checkpoint import ensure_demo
from mistral_serve.tokenizer import find_tokenizer_file

MODEL = "open-mistral-7b"
GREEDY = {"temperature": 0, "max_tokens": 12}
FIXED_LENGTH = {"ignore_eos": True}  # an extension: 12 tokens to compare, whatever the weights
RETRY = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "four"}, {"role": "system", "content": "Mind the schema."},
         {"role": "user", "content": "Validation failed: try again."}]
QUESTION = {"role": "user", "content": "Tell me about Paris."}
PREFIX = "Paris is"


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference(demo_data_dir) -> MistralTokenizer:
    """mistral-common on the demo's own tokenizer file, for the prompts the shapes map to."""
    return MistralTokenizer.from_file(find_tokenizer_file(ensure_demo(demo_data_dir)))


def chat(client: OpenAI, messages: list[dict], **extra):
    return client.chat.completions.create(model=MODEL, messages=messages, **GREEDY, extra_body=extra or None)


def completion_of(client: OpenAI, prompt_ids: list[int], **extra) -> str:
    """The plain completion of these prompt ids (greedy, as the chats here)."""
    return client.completions.create(model=MODEL, prompt=prompt_ids, **GREEDY, extra_body=extra or None).choices[0].text


def prefixed_prompt(reference: MistralTokenizer) -> list[int]:
    return reference.encode_chat_completion(ChatCompletionRequest(model=MODEL, messages=[
        UserMessage(content=QUESTION["content"]), AssistantMessage(content=PREFIX, prefix=True)])).tokens


# ---- a system message after an answer ------------------------------------------------------------

def test_the_retry_shape_answers_as_its_normalized_request(client, reference) -> None:
    normalized = [RETRY[0], RETRY[3], RETRY[1], RETRY[2], RETRY[4]]  # the system messages up front
    got, want = chat(client, RETRY, **FIXED_LENGTH), chat(client, normalized, **FIXED_LENGTH)
    assert got.choices[0].message.content == want.choices[0].message.content
    prompt = reference.encode_chat_completion(ChatCompletionRequest(model=MODEL, messages=[
        SystemMessage(content="Answer in JSON."), SystemMessage(content="Mind the schema."),
        UserMessage(content="2+2?"), AssistantMessage(content="four"),
        UserMessage(content="Validation failed: try again.")])).tokens
    assert got.usage.prompt_tokens == len(prompt)
    # ... and the answer is the one of that prompt, sent as raw ids.
    assert got.choices[0].message.content == completion_of(client, prompt, **FIXED_LENGTH)


def test_a_real_pydantic_ai_output_retry_is_answered(server) -> None:
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from openai import AsyncOpenAI
    from pydantic import BaseModel
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class Answer(BaseModel):
        value: int

    sent: list[tuple[list[dict], int]] = []

    async def record(response: httpx.Response) -> None:
        sent.append((json.loads(response.request.content)["messages"], response.status_code))

    async def run() -> None:
        async with httpx.AsyncClient(timeout=120, event_hooks={"response": [record]}) as http:
            openai = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", http_client=http, max_retries=0)
            # PromptedOutput: the schema goes in a system message and a reply that does not parse
            # is answered with a system message and a retry prompt after it. Random text never
            # parses, so the run ends once its one retry is spent, not on an HTTP error.
            agent = pydantic_ai.Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=openai)),
                                      output_type=pydantic_ai.PromptedOutput(Answer), retries=1,
                                      instructions="Answer with a number.", model_settings=GREEDY)
            with pytest.raises(pydantic_ai.exceptions.UnexpectedModelBehavior, match="output retries"):
                await agent.run("What is 2+2?")

    asyncio.run(run())
    assert [status for _, status in sent] == [200, 200]
    roles = [m["role"] for m in sent[1][0]]
    assert "system" in roles[roles.index("assistant"):], roles  # the shape mistral-common refuses


# ---- two messages of one role --------------------------------------------------------------------

def test_two_user_messages_answer_as_one_joined_by_a_blank_line(client) -> None:
    two = [{"role": "user", "content": "Hello."}, {"role": "user", "content": "Tell me about Paris."}]
    one = [{"role": "user", "content": "Hello.\n\nTell me about Paris."}]
    got, want = chat(client, two, **FIXED_LENGTH), chat(client, one, **FIXED_LENGTH)
    assert (got.choices[0].message.content, got.usage.prompt_tokens) == \
        (want.choices[0].message.content, want.usage.prompt_tokens)


def test_two_assistant_messages_answer_as_one(client) -> None:
    two = [QUESTION, {"role": "assistant", "content": "It is big."}, {"role": "assistant", "content": "Old too."},
           {"role": "user", "content": "More?"}]
    one = [QUESTION, {"role": "assistant", "content": "It is big.\n\nOld too."}, {"role": "user", "content": "More?"}]
    assert chat(client, two, **FIXED_LENGTH).choices[0].message.content == \
        chat(client, one, **FIXED_LENGTH).choices[0].message.content


# ---- continuing the last message -----------------------------------------------------------------

def test_a_prefix_is_continued_and_returned_with_the_answer_as_mistral_does(client, reference) -> None:
    prompt = prefixed_prompt(reference)
    rest = completion_of(client, prompt, **FIXED_LENGTH)
    assert rest.strip()
    answer = chat(client, [QUESTION, {"role": "assistant", "content": PREFIX, "prefix": True}], **FIXED_LENGTH)
    assert answer.choices[0].message.content == PREFIX + rest
    assert answer.usage.prompt_tokens == len(prompt) and answer.usage.completion_tokens == 12


def test_continue_final_message_returns_the_continuation_only_as_vllm_does(client, reference) -> None:
    rest = completion_of(client, prefixed_prompt(reference), **FIXED_LENGTH)
    messages = [QUESTION, {"role": "assistant", "content": PREFIX}]
    for flags in ({"continue_final_message": True}, {"continue_final_message": True, "add_generation_prompt": False}):
        answer = chat(client, messages, **flags, **FIXED_LENGTH)
        assert answer.choices[0].message.content == rest, flags


def test_a_streamed_continuation_is_the_same(client, reference) -> None:
    rest = completion_of(client, prefixed_prompt(reference), **FIXED_LENGTH)

    def streamed(messages, **extra) -> str:
        chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True, **GREEDY,
                                                extra_body={**FIXED_LENGTH, **extra})
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert streamed([QUESTION, {"role": "assistant", "content": PREFIX, "prefix": True}]) == PREFIX + rest
    assert streamed([QUESTION, {"role": "assistant", "content": PREFIX}], continue_final_message=True) == rest


# ---- vLLM's flags and what stays refused -----------------------------------------------------------

def test_add_generation_prompt_false_changes_nothing_for_mistral_formats(client) -> None:
    got = chat(client, [QUESTION], add_generation_prompt=False, **FIXED_LENGTH)
    want = chat(client, [QUESTION], **FIXED_LENGTH)
    assert (got.choices[0].message.content, got.usage.prompt_tokens) == \
        (want.choices[0].message.content, want.usage.prompt_tokens)


@pytest.mark.parametrize("messages, extra, param, words", [
    ([QUESTION, {"role": "assistant", "content": PREFIX}], {"continue_final_message": True, "add_generation_prompt": True},
     "continue_final_message", "Cannot set both `continue_final_message` and `add_generation_prompt` to True."),
    ([QUESTION], {"continue_final_message": True}, "messages", "must end with the assistant message to continue"),
    ([QUESTION, {"role": "assistant", "content": PREFIX}], {}, "messages",
     'not assistant (to continue it, set "prefix": true on it or continue_final_message)'),
    ([QUESTION, {"role": "assistant", "content": PREFIX}], {"add_generation_prompt": False}, "messages",
     "last message must be a user or tool message"),
    ([QUESTION, {"role": "assistant", "content": PREFIX, "prefix": True}, QUESTION], {}, "messages",
     'a message with "prefix": true must be the last message'),
])
def test_shapes_that_stay_refused_are_clear_400s(client, messages, extra, param, words) -> None:
    with pytest.raises(BadRequestError) as caught:
        chat(client, messages, **extra)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param and words in error["message"]


# ---- Anthropic's prefill ---------------------------------------------------------------------------

def test_an_anthropic_prefill_is_continued_and_the_answer_is_the_continuation(server, client, reference) -> None:
    claude = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=120)
    rest = completion_of(client, prefixed_prompt(reference))  # no ignore_eos in Anthropic's API
    assert rest.strip()
    messages = [QUESTION, {"role": "assistant", "content": PREFIX}]
    message = claude.messages.create(model=MODEL, max_tokens=12, messages=messages, extra_body={"temperature": 0})
    assert "".join(b.text for b in message.content if b.type == "text") == rest
    assert message.usage.input_tokens == len(prefixed_prompt(reference))
    with claude.messages.stream(model=MODEL, max_tokens=12, messages=messages, extra_body={"temperature": 0}) as s:
        assert "".join(s.text_stream) == rest
    assert claude.messages.count_tokens(model=MODEL, messages=messages).input_tokens == len(prefixed_prompt(reference))
