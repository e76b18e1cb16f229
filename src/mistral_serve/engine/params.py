"""SamplingParams: every control a request can set, validated once at the door."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class ParamError(ValueError):
    """An invalid sampling parameter. `param` names it for the API's error body."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise ParamError(param, f"{param} {message}")


# The most stop strings a request may give the engine (each is looked for in the text after every
# token). A dialect may allow fewer: the OpenAI API documents 4.
MAX_STOP_STRINGS = 16

GuidedKind = Literal["json_schema", "json_object", "regex", "choice", "grammar"]


@dataclass(frozen=True, slots=True)
class GuidedDecoding:
    """A constraint on the output, compiled to a grammar by engine/grammar.py. Hashable: the
    compiled grammar is cached under it."""

    kind: GuidedKind
    # The schema as canonical JSON, the regex, the choices as a JSON list, or EBNF.
    value: str = ""
    # The request field it came from, for error messages (e.g. "response_format").
    param: str = "response_format"
    # Tool calls: the grammar applies from this token on (`[TOOL_CALLS]`); with
    # trigger_required the token is forced as the first one.
    trigger_token: int | None = None
    trigger_required: bool = False

    @property
    def field(self) -> str:
        """The top-level request field ("response_format" for "response_format.json_schema.schema")."""
        return self.param.split(".")[0]


@dataclass(slots=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1 = off
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    max_tokens: int | None = None  # None = up to the end of the context
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    # Score the prompt: each prompt token's logprob (the first has none) and this many most likely
    # alternatives, as vLLM's prompt_logprobs; None = off. With it, max_tokens may be 0: the
    # request reads its prompt and ends without generating (how evaluation harnesses score text).
    prompt_logprobs: int | None = None
    # Raw completions continue the prompt's text: decode the output in place after it (keeping
    # a leading space). Chat answers are a text of their own.
    output_continues_prompt: bool = False
    guided: GuidedDecoding | None = None
    # Tokens never sampled (e.g. `[TOOL_CALLS]` when the request offers no tools).
    banned_token_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check(1 <= self.n <= 128, "n", f"must be between 1 and 128, got {self.n}")
        _check(0.0 <= self.temperature <= 2.0, "temperature", f"must be between 0 and 2, got {self.temperature}")
        _check(0.0 < self.top_p <= 1.0, "top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.top_k == -1 or self.top_k >= 0, "top_k", f"must be -1, 0 (off) or positive, got {self.top_k}")
        _check(0.0 <= self.min_p <= 1.0, "min_p", f"must be between 0 and 1, got {self.min_p}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(-2.0 <= value <= 2.0, name, f"must be between -2 and 2, got {value}")
        _check(0.0 < self.repetition_penalty <= 10.0, "repetition_penalty",
               f"must be in (0, 10], got {self.repetition_penalty}")
        for token, bias in self.logit_bias.items():
            _check(isinstance(token, int) and token >= 0, "logit_bias", f"keys must be token ids, got {token!r}")
            _check(-100.0 <= bias <= 100.0, "logit_bias", f"values must be between -100 and 100, got {bias}")
        _check(len(self.stop) <= MAX_STOP_STRINGS, "stop",
               f"accepts at most {MAX_STOP_STRINGS} strings, got {len(self.stop)}")
        _check(all(isinstance(s, str) and s for s in self.stop), "stop", "must be non-empty strings")
        _check(all(isinstance(t, int) and t >= 0 for t in self.stop_token_ids), "stop_token_ids",
               "must be token ids")
        scoring = self.prompt_logprobs is not None
        _check(self.max_tokens is None or self.max_tokens >= 1 or (self.max_tokens == 0 and scoring),
               "max_tokens", f"must be at least 1 (0 only to score a prompt, with prompt_logprobs), "
               f"got {self.max_tokens}")
        _check(self.min_tokens >= 0, "min_tokens", f"must be >= 0, got {self.min_tokens}")
        _check(self.max_tokens is None or self.min_tokens <= self.max_tokens, "min_tokens",
               f"({self.min_tokens}) must not exceed max_tokens ({self.max_tokens})")
        _check(0 <= self.top_logprobs <= 20, "top_logprobs", f"must be between 0 and 20, got {self.top_logprobs}")
        _check(self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= 20, "prompt_logprobs",
               f"must be between 0 and 20, got {self.prompt_logprobs}")
        _check(self.seed is None or -(2**63) <= self.seed < 2**64, "seed", "must fit in 64 bits")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids in logit_bias / stop_token_ids must exist in the model's vocabulary."""
        for name, ids in (("logit_bias", self.logit_bias), ("stop_token_ids", self.stop_token_ids),
                          ("banned_token_ids", self.banned_token_ids)):
            bad = [t for t in ids if t >= vocab_size]
            _check(not bad, name, f"has token id {bad[:1]} outside the vocabulary (size {vocab_size})")
