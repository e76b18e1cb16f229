"""Finding unpaired UTF-16 surrogate escapes in a JSON text, checked against Python's own parser."""

import json
import random

import pytest

from mistral_serve.server.surrogates import lone_surrogate


@pytest.mark.parametrize("body, at", [
    (rb'{"a": "\ud800"}', 7),  # a high half alone
    (rb'"\udc00"', 1),  # a low half alone
    (rb'"\ud800x\udc00"', 1),  # halves apart
    (rb'"\ud800\ud800\udc00"', 1),  # a high half, then a pair
    (rb'"\uD800"', 1),  # upper-case hex
    (rb'"\\\ud800"', 3),  # an escaped backslash, then the escape
    (rb'{"a": "\ud83d\ude00"}', None),  # a pair: one character
    (rb'"\u0041\ud83d\uDE00"', None),
    (rb'"\\ud800"', None),  # an escaped backslash followed by plain text
    (b'{"a": "plain \xf0\x9f\x98\x80"}', None),
])
def test_lone_surrogates_are_found(body, at):
    assert lone_surrogate(body) == at


def test_agrees_with_pythons_parser_on_random_strings():
    rng = random.Random(0)
    atoms = [rb"\ud800", rb"\udbff", rb"\udc00", rb"\udfff", rb"\u0041", rb"\\", rb"\n", b"a", b"d800",
             rb"\ud83d\ude00"]
    for _ in range(20_000):
        body = b'"' + b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 7))) + b'"'
        try:
            json.loads(body).encode("utf-8")
            valid = True
        except UnicodeEncodeError:
            valid = False
        assert (lone_surrogate(body) is None) == valid, body
