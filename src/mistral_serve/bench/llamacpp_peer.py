"""The llama.cpp peer: llama-cpp-python on a GGUF export of the same checkpoint (gguf_export.py).

Optional: needs `llama-cpp-python` (`available()` says whether it imports). Prompts are random
token ids like the engine benchmark's (bos, then ids from 1000 up, clear of the control tokens);
decoding is greedy (argmax of the logits, read straight from the context) and never stops at
EOS, so every run produces exactly `output_len` tokens per sequence.

Figures follow the engine's and the transformers peer's definitions: the first output token
comes from the prefill, so prefill tok/s = prompt tokens / time to first token, and decode tok/s
= the remaining output_len - 1 tokens (per sequence) / the time spent producing them.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np


def available() -> bool:
    """Whether llama-cpp-python is installed (and its shared library loads)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # ImportError, or OSError/RuntimeError from a library that fails to load
        return False
    return True


def _prompt(rng: random.Random, length: int, vocab: int) -> list[int]:
    # Same recipe as engine_bench.random_prompt: bos, then ids clear of the control tokens.
    return [1] + [rng.randrange(1000, vocab) for _ in range(length - 1)]


def _check(prompt_len: int, output_len: int, batch: int = 1) -> None:
    if prompt_len < 1 or output_len < 2 or batch < 1:
        raise ValueError("need batch >= 1, prompt_len >= 1 and output_len >= 2")


# ---- one sequence, through the high-level Llama class ----------------------------------------

class _Single:
    def __init__(self, gguf_path: Path, n_ctx: int, n_batch: int, threads: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llama_cpp.Llama(str(gguf_path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)
        self.vocab = self.llm.n_vocab()

    def _greedy(self) -> int:
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.vocab,))
        return int(logits.argmax())

    def run(self, prompt: list[int], output_len: int) -> tuple[list[int], float, float]:
        """Greedy tokens, prefill seconds (to the first token), decode seconds (the rest)."""
        self.llm.reset()  # the next eval drops the KV cache from position 0 on
        started = time.perf_counter()
        self.llm.eval(prompt)
        out = [self._greedy()]
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(output_len - 1):
            self.llm.eval([out[-1]])  # low-level loop: EOS is just another token
            out.append(self._greedy())
        return out, prefill, time.perf_counter() - started

    def close(self) -> None:
        self.llm.close()


def llamacpp_single_stream(gguf_path: Path, prompt_len: int, output_len: int, threads: int,
                           seed: int = 0) -> dict[str, float]:
    """One sequence: prefill a random prompt, then decode greedily to `output_len` tokens.

    Returns {"prefill_tok_s", "decode_tok_s", "output_tok_s"} (output_tok_s: output tokens over
    the whole run, prefill included, like the engine's "output tok/s").
    """
    _check(prompt_len, output_len)
    single = _Single(Path(gguf_path), prompt_len + output_len + 16, max(prompt_len, 32), threads)
    try:
        rng = random.Random(seed)
        single.run(_prompt(rng, 8, single.vocab), 2)  # warm-up: first-call allocations, threads
        _, prefill, decode = single.run(_prompt(rng, prompt_len, single.vocab), output_len)
    finally:
        single.close()
    return {"prefill_tok_s": prompt_len / prefill, "decode_tok_s": (output_len - 1) / decode,
            "output_tok_s": output_len / (prefill + decode)}


# ---- several sequences in one batch, through the C API bindings --------------------------------

class _Batched:
    """A llama.cpp context holding `n_seq` sequences, each in its own KV-cache stream."""

    def __init__(self, gguf_path: Path, n_seq: int, per_seq: int, n_batch: int, threads: int) -> None:
        import llama_cpp as L

        self.L = L
        if n_seq > L.llama_max_parallel_sequences():
            raise ValueError(f"llama.cpp supports at most {L.llama_max_parallel_sequences()} sequences")
        # llama-cpp-python routes llama.cpp's log through this logger; ERROR keeps it quiet.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(str(gguf_path).encode(), L.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"{gguf_path}: llama.cpp could not load the model")
        self.ctx = self.batch = None
        try:
            self.vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
            self.n_batch = max(n_batch, n_seq)
            cp = L.llama_context_default_params()
            cp.n_ctx = -(-per_seq // 256) * 256 * n_seq  # llama.cpp pads each stream to 256
            cp.n_batch = cp.n_ubatch = self.n_batch
            cp.n_seq_max = n_seq
            cp.n_threads = cp.n_threads_batch = threads
            cp.kv_unified = False  # llama.cpp's advice for sequences without a shared prefix
            cp.no_perf = True
            self.ctx = L.llama_init_from_model(self.model, cp)
            if not self.ctx:
                raise RuntimeError("llama.cpp could not create the context")
            self.batch = L.llama_batch_init(self.n_batch, 0, 1)
            self.memory = L.llama_get_memory(self.ctx)
        except BaseException:
            self.close()
            raise

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """One llama_decode call. items: (token, position, sequence, wants logits). Returns the
        argmax of each requested row, in item order."""
        b = self.batch
        b.n_tokens = len(items)
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        n_out = sum(1 for item in items if item[3])
        # Rows for the tokens that asked for logits, contiguous, in batch order.
        return np.ctypeslib.as_array(self.L.llama_get_logits(self.ctx), shape=(n_out, self.vocab)).argmax(axis=1)

    def run(self, prompts: list[list[int]], output_len: int) -> tuple[list[list[int]], float, float]:
        """Greedy tokens of each sequence, prefill seconds (every first token), decode seconds."""
        self.L.llama_memory_clear(self.memory, True)
        started = time.perf_counter()
        # Prefill: the prompts packed into calls of up to n_batch tokens.
        outs: list[list[int]] = [[] for _ in prompts]
        pending: list[tuple[int, int, int, bool]] = []
        for seq, prompt in enumerate(prompts):
            for pos, tok in enumerate(prompt):
                pending.append((tok, pos, seq, pos == len(prompt) - 1))
        for start in range(0, len(pending), self.n_batch):
            chunk = pending[start:start + self.n_batch]
            owners = [seq for _, _, seq, last in chunk if last]
            for seq, tok in zip(owners, self._decode(chunk)):
                outs[seq].append(int(tok))
        prefill = time.perf_counter() - started
        started = time.perf_counter()
        # Decode: one call per step, one token of every sequence in it.
        for _ in range(output_len - 1):
            items = [(out[-1], len(prompt) + len(out) - 1, seq, True)
                     for seq, (prompt, out) in enumerate(zip(prompts, outs))]
            for out, tok in zip(outs, self._decode(items)):
                out.append(int(tok))
        return outs, prefill, time.perf_counter() - started

    def close(self) -> None:
        L = self.L
        if self.batch is not None:
            L.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None


def llamacpp_batched(gguf_path: Path, batch: int, prompt_len: int, output_len: int, threads: int,
                     seed: int = 0, n_batch: int = 512) -> dict[str, float]:
    """`batch` sequences decoded together: every decode step is one llama_decode call carrying one
    token of each sequence (llama.cpp's own batched decoding, as in its `batched` example), each
    sequence in its own KV-cache stream. Prompts are prefilled first, packed into calls of up to
    `n_batch` tokens. The high-level `Llama` class drives one sequence only, so this goes through
    the C API bindings (llama_batch_init / llama_decode / llama_get_logits).

    Returns {"prefill_tok_s", "decode_tok_s", "output_tok_s"}, totals over all sequences.
    """
    _check(prompt_len, output_len, batch)
    runner = _Batched(Path(gguf_path), batch, prompt_len + output_len + 1, n_batch, threads)
    try:
        rng = random.Random(seed)
        runner.run([_prompt(rng, 8, runner.vocab) for _ in range(batch)], 2)  # warm-up
        _, prefill, decode = runner.run([_prompt(rng, prompt_len, runner.vocab) for _ in range(batch)],
                                        output_len)
    finally:
        runner.close()
    return {"prefill_tok_s": batch * prompt_len / prefill,
            "decode_tok_s": batch * (output_len - 1) / decode,
            "output_tok_s": batch * output_len / (prefill + decode)}


def llamacpp_logprobs(gguf_path: Path, ids: list[int], threads: int):
    """log-softmax of llama.cpp's logits at every position of `ids` (one pass): (len, vocab)."""
    import llama_cpp
    import torch

    llm = llama_cpp.Llama(str(gguf_path), n_ctx=max(64, len(ids)), n_batch=len(ids), n_ubatch=len(ids),
                          n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        return torch.log_softmax(torch.from_numpy(np.array(llm.scores[:len(ids)], dtype=np.float32)), dim=-1)
    finally:
        llm.close()
