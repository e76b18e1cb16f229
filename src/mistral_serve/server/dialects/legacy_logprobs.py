"""The legacy completions `logprobs` object: {tokens, token_logprobs, top_logprobs, text_offset},
one entry per token of the returned text.

With echo the prompt's tokens come first: the first has no logprob (null, and null alternatives),
as OpenAI's legacy completions and vLLM give it; then the completion's tokens. text_offset is the
character at which each token's text starts in the choice's text. A control token (BOS) stands
in `tokens` by its name but adds no character to the text, so the token after it starts at the
same offset. Worked example, prompt [<s>, ▁Hello, ▁world] echoed as "Hello world":
  tokens ["<s>", " Hello", " world"], token_logprobs [null, -9.1, -7.3], text_offset [0, 0, 5]
(sentencepiece drops the leading space of a text, so " Hello" adds "Hello" at 0.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ...engine.sequence import TokenLogprob
from ...tokenizer import Tokenizer
from ..generation import token_text


@dataclass
class LegacyLogprobs:
    """One choice's logprobs object, built in order (prompt, then the completion's deltas)."""

    tokenizer: Tokenizer
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    offset: int = 0  # characters of the choice's text so far

    def add_prompt(self, prompt_ids: Sequence[int], scores: Sequence[TokenLogprob | None]) -> None:
        """The echoed prompt's entries. Offsets come from decoding the prompt incrementally, the
        way the echoed text itself is decoded, so they point into exactly that text."""
        detok = self.tokenizer.detokenizer()
        for token_id, score in zip(prompt_ids, scores, strict=True):
            self._entry(token_id, score)
            self.offset += len(detok.add(token_id))
        self.offset += len(detok.flush())

    def add_completion(self, scores: Sequence[TokenLogprob]) -> None:
        for score in scores:
            self._entry(score.token_id, score)
            if not self.tokenizer.is_control(score.token_id):
                self.offset += len(self.tokens[-1])

    def _entry(self, token_id: int, score: TokenLogprob | None) -> None:
        tok = self.tokenizer
        self.tokens.append(token_text(tok, token_id))
        self.token_logprobs.append(None if score is None else score.logprob)
        top = None if score is None else {token_text(tok, t): v for t, v in score.top}
        self.top_logprobs.append(top or None)
        self.text_offset.append(self.offset)

    def take(self) -> dict:
        """The object for the entries added since the last take (a streamed chunk's own tokens;
        text_offset keeps counting from the start of the choice's text)."""
        out = {"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top_logprobs,
               "text_offset": self.text_offset}
        self.tokens, self.token_logprobs, self.top_logprobs, self.text_offset = [], [], [], []
        return out
