"""LLMEngine: requests in, token streams out, one `step()` at a time.

    step = schedule -> run the model on the batch -> sample -> commit (append tokens, check
           stops and lengths, report each request's delta)

A request may also ask for its prompt's logprobs (SamplingParams.prompt_logprobs): its first
sample collects them as it reads the prompt (engine/prompt_logprobs.py) and the request's first
output carries them. With max_tokens 0 such a request ends right after its prompt, with no token.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..config import EngineConfig
from ..model.transformer import Transformer
from .blocks import BlockManager
from .grammar import GrammarCompiler
from .masks import Masks, TokenMasks
from .params import ParamError, SamplingParams
from .prompt_logprobs import PromptScores
from .runner import ModelRunner, plan_num_blocks
from .sampling import SampleRow, Sampled, make_generator, sample
from .scheduler import Scheduler
from .step_cost import OnlineStepCost, StepCost
from .sequence import Sequence, TokenLogprob
from .stop import StopBuffer

log = logging.getLogger(__name__)


class ContextLengthError(ParamError):
    """The prompt plus the requested tokens do not fit in the context. The numbers travel with it
    so that the API can word the error as its clients expect (OpenAI's sentence)."""

    def __init__(self, param: str, message: str, *, limit: int, prompt_tokens: int,
                 completion_tokens: int | None) -> None:
        super().__init__(param, message)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens  # what was asked for; None: no limit given


@dataclass(slots=True)
class CompletionDelta:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob]
    finish_reason: str | None  # stop | length | abort | None while running


@dataclass(slots=True)
class RequestOutput:
    request_id: str
    deltas: list[CompletionDelta]
    prompt_tokens: int
    cached_tokens: int
    finished: bool
    # Set when this request alone failed in the step (sampling or decoding its tokens); it is
    # aborted, and the others in the batch go on.
    error: Exception | None = None
    # With SamplingParams.prompt_logprobs, in the request's first output only: one entry per
    # prompt token, the first None (no token precedes it).
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass(slots=True)
class _Request:
    request_id: str
    prompt_ids: list[int]
    seqs: list[Sequence]
    held: list[Sequence] = field(default_factory=list)  # n>1 samples waiting for the prompt


class LLMEngine:
    def __init__(self, model: Transformer, tokenizer, config: EngineConfig = EngineConfig(),
                 step_cost: StepCost | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_model_len = min(config.max_model_len or model.args.max_seq_len, model.args.max_seq_len)
        num_blocks = plan_num_blocks(config, model, self.max_model_len)
        self.blocks = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        # What a step costs on this device, learned from the steps timed in `step` (the scheduler
        # cuts prefill chunks by it while streams decode: config.target_step_ms).
        self.step_cost = step_cost if step_cost is not None else OnlineStepCost()
        self.scheduler = Scheduler(config, self.blocks, model.args.sliding_window, self.step_cost)
        self.runner = ModelRunner(model, num_blocks, config.block_size)
        # Tokens one sequence can hold. With a sliding window old blocks are returned as it goes,
        # so only the window plus one step's chunk must fit at once.
        self.capacity = num_blocks * config.block_size
        window = model.args.sliding_window
        if window is not None and self.capacity >= window + config.max_num_batched_tokens + 2 * config.block_size:
            self.capacity = self.max_model_len
        self.requests: dict[str, _Request] = {}
        self._seq_ids = itertools.count()
        self._grammars: GrammarCompiler | None = None
        self.masks = TokenMasks(model.args.vocab_size, model.device)

    @property
    def grammars(self) -> GrammarCompiler:
        """The grammar compiler for this tokenizer, built on the first constrained request."""
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer.grammar_vocab(), self.model.args.vocab_size,
                                             self.tokenizer.eos_id, self.tokenizer.stop_ids)
        return self._grammars

    # ---- requests in ------------------------------------------------------------------
    def check_request(self, prompt_ids: list[int], params: SamplingParams) -> int:
        """Validate a request before admission; returns its max length in tokens."""
        vocab = self.model.args.vocab_size
        if not prompt_ids:
            raise ParamError("prompt", "the prompt is empty")
        if any(not 0 <= t < vocab for t in prompt_ids):
            raise ParamError("prompt", f"the prompt holds token ids outside the vocabulary (size {vocab})")
        params.check_vocab(vocab)
        if params.guided is not None:
            self.grammars.compile(params.guided)  # cached: the server compiles ahead, off this thread
        limit = min(self.max_model_len, self.capacity)
        if len(prompt_ids) >= limit:
            raise ContextLengthError("prompt", f"the prompt has {len(prompt_ids)} tokens but the "
                                     f"model's context is {limit} tokens",
                                     limit=limit, prompt_tokens=len(prompt_ids),
                                     completion_tokens=params.max_tokens)
        if params.max_tokens is not None and len(prompt_ids) + params.max_tokens > limit:
            raise ContextLengthError("max_tokens", f"the prompt ({len(prompt_ids)} tokens) plus max_tokens "
                                     f"({params.max_tokens}) is {len(prompt_ids) + params.max_tokens} tokens, "
                                     f"more than the model's context of {limit} tokens",
                                     limit=limit, prompt_tokens=len(prompt_ids),
                                     completion_tokens=params.max_tokens)
        return limit if params.max_tokens is None else len(prompt_ids) + params.max_tokens

    def add_request(self, prompt_ids: list[int], params: SamplingParams,
                    request_id: str | None = None) -> str:
        max_len = self.check_request(prompt_ids, params)
        request_id = request_id or uuid.uuid4().hex
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already running")
        seqs = []
        for index in range(params.n):
            seed = None if params.seed is None else params.seed + index
            seqs.append(Sequence(
                seq_id=next(self._seq_ids), request_id=request_id, index=index,
                prompt_ids=list(prompt_ids), params=params, max_len=max_len,
                generator=None if params.greedy and params.n == 1 else make_generator(seed, self.model.device),
                stop=StopBuffer(params.stop),
                detok=self.tokenizer.detokenizer(prompt_ids if params.output_continues_prompt else ()),
                grammar=self.grammars.state(params.guided) if params.guided is not None else None))
        if params.prompt_logprobs is not None:  # the samples share one prompt: the first scores it
            seqs[0].prompt_scores = PromptScores(list(prompt_ids), params.prompt_logprobs)
        req = _Request(request_id, list(prompt_ids), seqs)
        # Extra samples start once the first has read the prompt, so they find it in the cache.
        if self.config.enable_prefix_caching:
            req.held = seqs[1:]
            seqs = seqs[:1]
        for seq in seqs:
            self.scheduler.add(seq)
        self.requests[request_id] = req
        return request_id

    def abort(self, request_id: str) -> bool:
        """Stop a request now and free its blocks. False if it is unknown or already done."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return False
        for seq in req.seqs:
            if not seq.is_finished:
                self.scheduler.finish(seq)
                seq.finish_reason = "abort"
        return True

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # ---- the step -----------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule -> run the model -> sample -> commit; returns the outputs of the requests that
        changed."""
        started = time.perf_counter()
        batch = self.scheduler.schedule()
        if not batch:
            return []
        rows = batch.sample_rows()
        seqs = [batch.items[i][0] for i in rows]
        prompt_only = [batch.items[i][0] for i in batch.prompt_only_rows()]
        masks = self.masks.start(seqs)  # on a GPU, computed while the model runs
        logits = self.runner.run(batch, rows)
        for i, (positions, scored) in batch.prompt_logprobs.items():
            batch.items[i][0].prompt_scores.fill(positions, scored)
        self.scheduler.after_step(batch)
        sampled = self._sample(logits, seqs, masks) if seqs else []
        outputs = self._commit(seqs, sampled, prompt_only)
        # The whole step is what a decoding stream waits for its token. Only a step that sampled
        # is timed: sampling reads the logits, so it has waited for the device, while a step that
        # only read a prompt chunk may return before a GPU has run it.
        if seqs:
            self.step_cost.observe(batch.shape, time.perf_counter() - started)
        return outputs

    def _sample(self, logits, seqs: list[Sequence], masks: Future[Masks] | None) -> list[Sampled | Exception]:
        """All rows at once; if that fails, row by row, so that one request's bad row (its
        exception in its place) does not fail the others."""
        raw = logits  # the model's own distribution, for logprobs
        logits = self.masks.apply(logits, seqs, masks)
        rows = [SampleRow(s.params, s.prompt_ids, s.output_ids, s.generator, self.tokenizer.stop_ids) for s in seqs]
        try:
            return sample(logits, rows, raw)
        except Exception:
            results: list[Sampled | Exception] = []
            for i, row in enumerate(rows):
                try:
                    results.append(sample(logits[i:i + 1], [row], raw[i:i + 1])[0])
                except Exception as err:
                    results.append(err)
            return results

    def _commit(self, seqs: list[Sequence], sampled: list[Sampled | Exception],
                prompt_only: list[Sequence] = ()) -> list[RequestOutput]:
        """Append each sequence's token and report each request's delta. A request whose row
        fails (sampling, decoding its text) is aborted with its error; the others go on.
        `prompt_only`: sequences that have read their prompt and generate nothing (max_tokens 0):
        they end here, with "length" as OpenAI's echo-only completions do."""
        touched: dict[str, list[Sequence]] = {}
        failed: dict[str, Exception] = {}
        for seq in prompt_only:
            self._release_held(seq)
            self._finish(seq, "length")
            touched.setdefault(seq.request_id, []).append(seq)
        for seq, result in zip(seqs, sampled):
            if seq.request_id in failed:
                continue
            try:
                if isinstance(result, Exception):
                    raise result
                self._append(seq, result)
            except Exception as err:
                log.exception("request %s failed in this step; the rest of the batch goes on", seq.request_id)
                failed[seq.request_id] = err
                continue
            touched.setdefault(seq.request_id, []).append(seq)
        outputs = [self._report(rid, changed) for rid, changed in touched.items() if rid not in failed]
        return outputs + [self._fail(rid, err) for rid, err in failed.items()]

    def _append(self, seq: Sequence, result: Sampled) -> None:
        """Record the sampled token; finish the sequence if it ended."""
        token = result.token
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
            self._release_held(seq)
        seq.output_ids.append(token)
        seq.new_token_ids.append(token)
        if seq.grammar is not None:
            seq.grammar.accept(token)
        if result.logprob is not None:
            seq.new_logprobs.append(TokenLogprob(token, result.logprob, result.top))
        reason = self._finish_reason(seq, token)
        if reason is not None:
            self._finish(seq, reason)

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        """"stop" after a stop token, the grammar's end or a stop string; "length" at max_len;
        None while the sequence goes on. Decodes the token into the sequence's text on the way
        (stop strings are found in the text)."""
        p = seq.params
        if ((token in self.tokenizer.stop_ids and not p.ignore_eos) or token in p.stop_token_ids
                or (seq.grammar is not None and seq.grammar.finished)):
            return "stop"
        seq.new_text += seq.stop.push(seq.detok.add(token))
        if seq.stop.stopped:
            return "stop"
        return "length" if seq.num_tokens >= seq.max_len else None

    def _finish(self, seq: Sequence, reason: str) -> None:
        """End the sequence and free its blocks. Unless a stop string ended it, the text held
        back (a partial character, the start of a stop string) is text after all."""
        if not seq.stop.stopped:
            seq.new_text += seq.stop.push(seq.detok.flush())
            seq.new_text += seq.stop.flush()
        seq.finish_reason = reason
        self.scheduler.finish(seq)

    def _release_held(self, seq: Sequence) -> None:
        req = self.requests.get(seq.request_id)
        if req is not None and seq.index == 0 and req.held:
            for held in reversed(req.held):
                self.scheduler.add(held, front=True)
            req.seqs.extend(req.held)
            req.held = []

    def _report(self, request_id: str, changed: list[Sequence]) -> RequestOutput:
        req = self.requests[request_id]
        deltas = []
        for seq in changed:
            text, ids, logprobs = seq.take_delta()
            deltas.append(CompletionDelta(seq.index, text, ids, logprobs, seq.finish_reason))
        finished = not req.held and all(s.is_finished for s in req.seqs)
        if finished:
            del self.requests[request_id]
        first = req.seqs[0]
        prompt_logprobs = None
        if first.scoring_prompt and first in changed:  # it has just read its whole prompt
            first.prompt_scores.reported = True
            prompt_logprobs = first.prompt_scores.entries
        return RequestOutput(request_id, deltas, len(req.prompt_ids), first.num_cached or 0, finished,
                             prompt_logprobs=prompt_logprobs)

    def _fail(self, request_id: str, err: Exception) -> RequestOutput:
        req = self.requests.get(request_id)
        self.abort(request_id)
        return RequestOutput(request_id, [], len(req.prompt_ids) if req else 0, 0, True, error=err)

    # ---- introspection --------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)
