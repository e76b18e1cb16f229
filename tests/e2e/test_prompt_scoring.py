"""Prompt scoring on /v1/completions with the official `openai` package: `echo` with `logprobs`
gives the prompt's tokens and logprobs (the first null) before the completion's, `max_tokens: 0`
scores a prompt without generating, streamed too; and /tokenizer_info with /tokenize of control
tokens, as lm-evaluation-harness's remote tokenizer reads them.

Every logprob is checked against a plain forward pass of the same demo checkpoint in this process
(tests/support/scoring_reference.py), so a server that scored the wrong position, skipped cached
positions or applied the sampling controls would fail.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from support.openai_helpers import MODEL
from support.scoring_reference import TOLERANCE, prompt_logprobs, token_logprobs
from support.server_process import ServerProcess

PROMPT = "The quick brown fox jumps over the lazy dog because"


@pytest.fixture(scope="module")
def server(demo_data_dir):
    # float32, so that the server's logprobs agree with the reference forward pass to rounding
    proc = ServerProcess(demo_data_dir, "--dtype", "float32", env={"MISTRAL_SERVE_API_KEY": ""}).wait_ready()
    yield proc
    proc.stop()


def ids_of(server, text: str, bos: bool = True) -> list[int]:
    return httpx.post(server.url + "/tokenize", json={"prompt": text, "add_special_tokens": bos}).json()["tokens"]


def score(client: OpenAI, **kw):
    kw.setdefault("model", MODEL)
    kw.setdefault("prompt", PROMPT)
    kw.setdefault("temperature", 0)
    return client.completions.create(**kw)


def assert_prompt_part(lp, ids, demo_data_dir, top: int) -> None:
    """The first len(ids) entries are the prompt's, equal to the reference."""
    ref = prompt_logprobs(demo_data_dir, ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    got = lp.token_logprobs[1:len(ids)]
    assert got == pytest.approx([float(ref[i - 1, t]) for i, t in enumerate(ids) if i], abs=TOLERANCE)
    for i in range(1, len(ids)):
        values = ref[i - 1].topk(top).values.tolist()
        assert list(lp.top_logprobs[i].values()) == pytest.approx(values, abs=TOLERANCE), f"position {i}"


def test_echo_with_logprobs_gives_the_prompt_then_the_completion(server, client, demo_data_dir):
    ids = ids_of(server, PROMPT)
    r = score(client, echo=True, logprobs=2, max_tokens=3)
    choice = r.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(ids) + 3
    assert lp.tokens[0] == "<s>" and lp.tokens[1].strip() == "The"
    assert_prompt_part(lp, ids, demo_data_dir, top=2)
    # the completion's entries follow, as without echo
    plain = score(client, logprobs=2, max_tokens=3).choices[0]
    assert choice.text == PROMPT + plain.text
    assert lp.tokens[len(ids):] == plain.logprobs.tokens
    assert lp.token_logprobs[len(ids):] == pytest.approx(plain.logprobs.token_logprobs, abs=1e-5)
    # offsets point into the returned text: the completion starts after the prompt
    assert lp.text_offset[:2] == [0, 0]  # <s> adds no character; "▁The" starts the text
    assert lp.text_offset == sorted(lp.text_offset)
    assert lp.text_offset[len(ids)] == len(PROMPT)
    for token, offset in zip(lp.tokens[2:], lp.text_offset[2:]):
        assert choice.text[offset:offset + len(token)] == token
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 3


def test_max_tokens_zero_with_echo_scores_the_prompt_without_generating(server, client, demo_data_dir):
    ids = ids_of(server, PROMPT)
    r = score(client, echo=True, logprobs=1, max_tokens=0)
    choice = r.choices[0]
    assert choice.text == PROMPT and choice.finish_reason == "length"
    assert len(choice.logprobs.tokens) == len(ids)
    assert_prompt_part(choice.logprobs, ids, demo_data_dir, top=1)
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == len(ids)
    # the same entries as the prompt part of a request that generates
    longer = score(client, echo=True, logprobs=1, max_tokens=1).choices[0].logprobs
    assert choice.logprobs.token_logprobs[1:] == pytest.approx(longer.token_logprobs[1:len(ids)], abs=1e-5)
    # and without logprobs: the prompt alone
    bare = score(client, echo=True, max_tokens=0)
    assert bare.choices[0].text == PROMPT and bare.choices[0].logprobs is None
    assert bare.usage.completion_tokens == 0


def test_max_tokens_zero_without_echo_is_a_400_naming_max_tokens(client):
    with pytest.raises(openai.BadRequestError) as info:
        score(client, max_tokens=0)
    assert info.value.body["param"] == "max_tokens" and "echo" in info.value.body["message"]


def test_a_token_id_prompt_without_bos_is_scored_as_lm_eval_sends_it(server, client, demo_data_dir):
    ids = ids_of(server, PROMPT, bos=False)  # lm-eval's remote tokenizer: no special tokens
    lp = score(client, prompt=ids, echo=True, logprobs=1, max_tokens=1).choices[0].logprobs
    assert len(lp.token_logprobs) == len(ids) + 1
    assert lp.token_logprobs[1:len(ids)] == pytest.approx(token_logprobs(demo_data_dir, ids), abs=TOLERANCE)
    # lm-eval's sum: entries [ctxlen:-1] are the continuation (the last is the generated token)
    ctxlen = 4
    expected = sum(token_logprobs(demo_data_dir, ids)[ctxlen - 1:])
    assert sum(lp.token_logprobs[ctxlen:-1]) == pytest.approx(expected, abs=TOLERANCE)


def test_each_prompt_of_a_batch_gets_its_own_entries(server, client, demo_data_dir):
    texts = ["A dog barks", "Once upon a time there was"]
    r = score(client, prompt=texts, echo=True, logprobs=1, max_tokens=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for k, text in enumerate(texts):
        ids = ids_of(server, text)
        for choice in r.choices[2 * k:2 * k + 2]:
            assert choice.text == text and len(choice.logprobs.tokens) == len(ids)
            assert_prompt_part(choice.logprobs, ids, demo_data_dir, top=1)


def test_a_prompt_in_the_prefix_cache_is_scored_the_same(client):
    long_prompt = " ".join([PROMPT] * 6)  # several full KV blocks
    score(client, prompt=long_prompt, max_tokens=1)  # leaves its blocks in the cache
    first = score(client, prompt=long_prompt, echo=True, logprobs=1, max_tokens=0)
    again = score(client, prompt=long_prompt, echo=True, logprobs=1, max_tokens=0)
    assert first.choices[0].logprobs.token_logprobs == again.choices[0].logprobs.token_logprobs
    assert all(v is not None for v in first.choices[0].logprobs.token_logprobs[1:])


def test_the_stream_sends_the_echo_with_its_logprobs_first(client):
    whole = score(client, echo=True, logprobs=2, max_tokens=4).choices[0]
    chunks = [c for c in score(client, echo=True, logprobs=2, max_tokens=4, stream=True) if c.choices]
    assert chunks[0].choices[0].text == PROMPT
    assert chunks[0].choices[0].logprobs.token_logprobs[0] is None
    assert "".join(c.choices[0].text for c in chunks) == whole.text
    joined = {"tokens": [], "token_logprobs": [], "text_offset": []}
    for c in chunks:
        if c.choices[0].logprobs is not None:
            for key in joined:
                joined[key] += getattr(c.choices[0].logprobs, key)
    assert joined["tokens"] == whole.logprobs.tokens
    assert joined["text_offset"] == whole.logprobs.text_offset
    assert joined["token_logprobs"][1:] == pytest.approx(whole.logprobs.token_logprobs[1:], abs=1e-5)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_streamed_max_tokens_zero_is_the_echo_and_an_end(client):
    chunks = [c for c in score(client, echo=True, logprobs=0, max_tokens=0, stream=True) if c.choices]
    assert chunks[0].choices[0].text == PROMPT
    assert "".join(c.choices[0].text for c in chunks) == PROMPT
    assert chunks[-1].choices[0].finish_reason == "length"


# ---- the remote tokenizer's endpoints ----------------------------------------------------------

def test_tokenizer_info_names_the_tokens_the_model_uses(server):
    info = httpx.get(server.url + "/tokenizer_info").json()
    assert info["tokenizer_class"] and info["bos_token"] == "<s>" and info["eos_token"] == "</s>"
    assert info["add_bos_token"] is True and info["model_max_length"] > 0
    # lm-eval finds the ids by tokenizing these strings without special tokens
    assert ids_of(server, info["bos_token"], bos=False) == [1]
    assert ids_of(server, info["eos_token"], bos=False) == [2]
    assert ids_of(server, "</s>") == [1, 2]
    # text that merely contains a control token's spelling stays text, as /v1/completions reads it
    assert 2 not in ids_of(server, "a</s>", bos=False) and 1 not in ids_of(server, "<s> a", bos=False)


def test_a_streamed_batch_gives_every_choice_its_echo_first(server, client):
    texts = ["A dog barks", "Once upon a time there was"]
    whole = score(client, prompt=texts, echo=True, logprobs=1, max_tokens=2, n=2)
    chunks = [c.choices[0] for c in score(client, prompt=texts, echo=True, logprobs=1, max_tokens=2, n=2,
                                          stream=True) if c.choices]
    for choice in whole.choices:
        mine = [c for c in chunks if c.index == choice.index]
        assert mine[0].text == texts[choice.index // 2]
        assert "".join(c.text for c in mine) == choice.text
        tokens = [t for c in mine if c.logprobs for t in c.logprobs.tokens]
        offsets = [o for c in mine if c.logprobs for o in c.logprobs.text_offset]
        assert tokens == choice.logprobs.tokens and offsets == choice.logprobs.text_offset
        assert mine[-1].finish_reason == "length"
