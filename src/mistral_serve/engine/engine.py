"""LLMEngine: requests in, token streams out, one `step()` at a time.

    step = schedule -> run the model on the batch -> sample -> append tokens, check stops -> report
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from ..config import EngineConfig, parse_memory
from ..model.hardware import available_memory
from ..model.transformer import Transformer
from .blocks import BlockManager
from .grammar import GrammarCompiler, apply_bitmask, new_bitmask
from .params import ParamError, SamplingParams
from .runner import ModelRunner, kv_bytes_per_block
from .sampling import SampleRow, Sampled, make_generator, sample
from .scheduler import Scheduler, SchedulerConfig
from .sequence import Sequence, TokenLogprob
from .stop import StopBuffer

DEFAULT_CPU_KV_BYTES = 4 * 1024**3

log = logging.getLogger(__name__)


class ContextLengthError(ParamError):
    """The prompt plus the requested tokens do not fit in the context."""


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


@dataclass(slots=True)
class _Request:
    request_id: str
    prompt_ids: list[int]
    seqs: list[Sequence]
    held: list[Sequence] = field(default_factory=list)  # n>1 samples waiting for the prompt


def plan_num_blocks(config: EngineConfig, model: Transformer, max_model_len: int) -> int:
    """How many KV blocks fit the memory budget (never more than max_num_seqs full contexts)."""
    per_block = kv_bytes_per_block(model, config.block_size)
    if model.device.type == "cuda":
        free = torch.cuda.mem_get_info(model.device)[0]
        default: float | int = 0.9
    else:
        free = available_memory()
        default = min(DEFAULT_CPU_KV_BYTES, free // 2)
    spec = parse_memory(config.kv_cache_memory) if config.kv_cache_memory else default
    budget = int(spec * free) if isinstance(spec, float) else spec
    useful = -(-max_model_len // config.block_size) * config.max_num_seqs
    blocks = min(budget // per_block, useful)
    if blocks < 1:
        raise ValueError(f"kv_cache_memory ({budget} bytes) holds no KV block ({per_block} bytes each)")
    return blocks


class LLMEngine:
    def __init__(self, model: Transformer, tokenizer, config: EngineConfig = EngineConfig()) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_model_len = min(config.max_model_len or model.args.max_seq_len, model.args.max_seq_len)
        num_blocks = plan_num_blocks(config, model, self.max_model_len)
        self.blocks = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(SchedulerConfig(config.max_num_seqs, config.max_num_batched_tokens,
                                                   model.args.sliding_window), self.blocks)
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
        self._mask_pool: ThreadPoolExecutor | None = None
        # Time spent computing grammar masks, and how many masked tokens it bought (for the bench).
        self.mask_seconds = 0.0
        self.masked_tokens = 0

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
                                     f"model's context is {limit} tokens")
        if params.max_tokens is not None and len(prompt_ids) + params.max_tokens > limit:
            raise ContextLengthError("max_tokens", f"the prompt ({len(prompt_ids)} tokens) plus max_tokens "
                                     f"({params.max_tokens}) is {len(prompt_ids) + params.max_tokens} tokens, "
                                     f"more than the model's context of {limit} tokens")
        return limit if params.max_tokens is None else len(prompt_ids) + params.max_tokens

    def add_request(self, prompt_ids: list[int], params: SamplingParams,
                    request_id: str | None = None) -> str:
        max_len = self.check_request(prompt_ids, params)
        request_id = request_id or uuid.uuid4().hex
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already running")
        now = time.monotonic()
        seqs = []
        for index in range(params.n):
            seed = None if params.seed is None else params.seed + index
            seqs.append(Sequence(
                seq_id=next(self._seq_ids), request_id=request_id, index=index,
                prompt_ids=list(prompt_ids), params=params, max_len=max_len,
                generator=None if params.greedy and params.n == 1 else make_generator(seed, self.model.device),
                stop=StopBuffer(params.stop), arrival=now,
                detok=self.tokenizer.detokenizer(prompt_ids if params.output_continues_prompt else ()),
                grammar=self.grammars.state(params.guided) if params.guided is not None else None))
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
        batch = self.scheduler.schedule()
        if not batch:
            return []
        sample_rows = [i for i, (seq, n) in enumerate(batch.items) if seq.num_computed + n == seq.num_tokens]
        seqs = [batch.items[i][0] for i in sample_rows]
        # Grammar masks depend only on tokens already written: on a GPU they are computed while
        # the model runs.
        masks = self._start_masks(seqs)
        logits = self.runner.run(batch, sample_rows)
        self.scheduler.after_step(batch)
        raw = logits
        if masks is not None or any(s.params.banned_token_ids for s in seqs):
            logits = self._apply_masks(logits.clone(), seqs, masks)
        rows = [SampleRow(s.params, s.prompt_ids, s.output_ids, s.generator, self.tokenizer.stop_ids) for s in seqs]
        touched: dict[str, list[Sequence]] = {}
        failed: dict[str, Exception] = {}
        for seq, result in zip(seqs, self._sample(logits, rows, raw)):
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
        for rid, err in failed.items():
            req = self.requests.get(rid)
            self.abort(rid)
            outputs.append(RequestOutput(rid, [], len(req.prompt_ids) if req else 0, 0, True, error=err))
        return outputs

    @staticmethod
    def _sample(logits, rows: list[SampleRow], raw) -> list[Sampled | Exception]:
        """All rows at once; if that fails, row by row, so that one request's bad row (its
        exception in its place) does not fail the others."""
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

    def _start_masks(self, seqs: list[Sequence]) -> Future | None:
        if not any(s.grammar is not None for s in seqs):
            return None
        if self.model.device.type != "cuda":
            # On a CPU the forward's threads already use every core: a mask thread beside them
            # makes OpenMP's threads wait on each other and slowed whole steps several-fold
            # (measured). Computed inline, the mask costs its own time only.
            done: Future = Future()
            done.set_result(self._fill_masks(seqs))
            return done
        if self._mask_pool is None:
            self._mask_pool = ThreadPoolExecutor(1, thread_name_prefix="grammar-mask")
        return self._mask_pool.submit(self._fill_masks, seqs)

    def _fill_masks(self, seqs: list[Sequence]):
        """The bitmask (len(seqs), ceil(V/32)) and the rows it constrains this step."""
        start = time.perf_counter()
        bitmask = new_bitmask(len(seqs), self.model.args.vocab_size)
        rows = [i for i, s in enumerate(seqs)
                if s.grammar is not None and s.grammar.fill(bitmask, i, s.max_len - s.num_tokens)]
        self.mask_seconds += time.perf_counter() - start
        self.masked_tokens += len(rows)
        return bitmask, rows

    @staticmethod
    def _apply_masks(logits, seqs: list[Sequence], masks: Future | None):
        """logits (B, V) float32 -> the same with refused and banned tokens at -inf."""
        for i, seq in enumerate(seqs):
            if seq.params.banned_token_ids:
                logits[i, seq.params.banned_token_ids] = float("-inf")
        if masks is not None:
            bitmask, rows = masks.result()
            apply_bitmask(logits, bitmask, rows)
        return logits

    def _append(self, seq: Sequence, result: Sampled) -> None:
        token, p = result.token, seq.params
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
            self._release_held(seq)
        seq.output_ids.append(token)
        seq.new_token_ids.append(token)
        if seq.grammar is not None:
            seq.grammar.accept(token)
        if result.logprob is not None:
            seq.new_logprobs.append(TokenLogprob(token, result.logprob, result.top))
        reason = None
        if ((token in self.tokenizer.stop_ids and not p.ignore_eos) or token in p.stop_token_ids
                or (seq.grammar is not None and seq.grammar.finished)):
            reason = "stop"
        else:
            seq.new_text += seq.stop.push(seq.detok.add(token))
            if seq.stop.stopped:
                reason = "stop"
        if reason is None and seq.num_tokens >= seq.max_len:
            reason = "length"
        if reason is not None:
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
        return RequestOutput(request_id, deltas, len(req.prompt_ids), first.num_cached or 0, finished)

    # ---- introspection --------------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)
