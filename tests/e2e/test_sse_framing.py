"""Streamed text holding characters that many clients take for line breaks (U+0085, U+2028,
U+2029: str.splitlines and httpx's iter_lines split on them, SSE does not) stays inside its event.

Found by the reliability suite: the demo model wrote token 32131 (U+0085) into a stream, and the
client saw half an event."""

from __future__ import annotations

import httpx

from support.live import chat, read_sse

NEL = 32131  # the v3 vocabulary's token for U+0085


def test_line_breaking_characters_are_escaped_in_events(server):
    body = chat("Hello", max_tokens=3, temperature=0, logit_bias={str(NEL): 100}, stream=True)
    for path in ("/v1/chat/completions", "/api/ai/chat/completions"):
        with httpx.Client(base_url=server.url, timeout=60) as c, c.stream("POST", path, json=body) as r:
            assert r.status_code == 200
            sse = read_sse(r.iter_lines())  # splits on U+0085: every line must still be whole JSON
        assert sse["done"] and not sse["errors"]
        assert sse["text"] == "\x85" * 3
    completion = {"model": body["model"], "prompt": "Hello", "max_tokens": 3, "temperature": 0,
                  "logit_bias": {str(NEL): 100}, "stream": True}
    with httpx.Client(base_url=server.url, timeout=60) as c, \
            c.stream("POST", "/v1/completions", json=completion) as r:
        sse = read_sse(r.iter_lines())
    assert sse["done"] and sse["text"] == "\x85" * 3
