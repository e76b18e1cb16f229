"""The llama.cpp peer: llama-cpp-python on a GGUF export of the same checkpoint (gguf_export.py).

Optional: needs `llama-cpp-python` (`available()` says whether it imports). Prompts are random
token ids like the engine benchmark's (bos, then ids from 1000 up, clear of the control tokens);
decoding is greedy (argmax of the logits, read straight from the context) and never stops at
EOS, so every run produces exactly `output_len` tokens per sequence.

Figures follow the engine's and the transformers peer's definitions: the first output token
comes from the prefill, so prefill tok/s = prompt tokens / time to first token, and decode tok/s
= the remaining output_len - 1 tokens (per sequence) / the time spent producing them.

Also a script (`python llamacpp_peer.py single|batched --gguf FILE ...`, see `main`): the bench
runs it with another venv's python to measure another build of llama.cpp (one process cannot load
two), so this file imports only the standard library and numpy at module level (llama_cpp inside
the functions, torch in llamacpp_logprobs only), and nothing of mistral_serve.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
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
                           seed: int = 0, repeats: int = 1) -> dict[str, float]:
    """One sequence: prefill a random prompt, then decode greedily to `output_len` tokens.
    With `repeats` > 1, that many runs (each on a new prompt), and the best prefill and the best
    decode time of them.

    Returns {"prefill_tok_s", "decode_tok_s", "output_tok_s"} (output_tok_s: output tokens over
    the whole run, prefill included, like the engine's "output tok/s").
    """
    _check(prompt_len, output_len)
    single = _Single(Path(gguf_path), prompt_len + output_len + 16, max(prompt_len, 32), threads)
    try:
        rng = random.Random(seed)
        single.run(_prompt(rng, 8, single.vocab), 2)  # warm-up: first-call allocations, threads
        runs = [single.run(_prompt(rng, prompt_len, single.vocab), output_len)[1:] for _ in range(max(1, repeats))]
        prefill, decode = min(r[0] for r in runs), min(r[1] for r in runs)
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


# ---- the script: one measurement in this process, one JSON line on stdout ---------------------

def system_info() -> str:
    """llama.cpp's own line of the instructions its CPU backend was built with, e.g.
    "CPU : SSE3 = 1 | ... | AVX2 = 1 | F16C = 1 | FMA = 1 | ..." (AVX512 = 1 where it has them)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return (info.decode(errors="replace") if isinstance(info, bytes) else str(info)).strip().rstrip("|").strip()


def isa_problem(info: str, isa: str) -> str | None:
    """Why llama.cpp's system info line `info` is not the build `isa` names ("avx2": AVX2 = 1
    and no AVX-512 instruction set at all), or None when it is."""
    if isa != "avx2":
        raise ValueError(f"no ISA check for {isa!r} (there is: avx2)")
    if not re.search(r"\bAVX2 = 1\b", info):
        return f"llama.cpp does not report AVX2 = 1: {info}"
    wide = sorted(set(re.findall(r"\b(AVX512\w*) = 1\b", info)))
    if wide:
        return f"llama.cpp was built with {', '.join(wide)}, not held to AVX2: {info}"
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time llama-cpp-python on a GGUF file; prints one JSON line.")
    p.add_argument("mode", choices=("single", "batched"), help="single: one stream (the Llama class); "
                   "batched: --batch sequences decoded together (the C API)")
    p.add_argument("--gguf", type=Path, required=True)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8, help="sequences (batched mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="timed runs, best of them (single mode)")
    p.add_argument("--require-isa", choices=("avx2",), default=None,
                   help="refuse (exit 3) unless llama.cpp's system info says it is that build")
    return p


def main(argv: list[str] | None = None) -> int:
    """The script's entry. stdout: one JSON object, the measurement's figures with "system_info"
    and "llama_cpp_version", or {"error": ...} (exit 3 for a build refused by --require-isa, 1 for
    a failed run)."""
    ns = _parser().parse_args(argv)
    try:
        import llama_cpp

        info = system_info()
        record: dict = {"mode": ns.mode, "system_info": info, "threads": ns.threads,
                        "llama_cpp_version": getattr(llama_cpp, "__version__", "?")}
        problem = isa_problem(info, ns.require_isa) if ns.require_isa else None
        if problem is not None:
            print(json.dumps({**record, "error": problem}), flush=True)
            return 3
        if ns.mode == "single":
            r = llamacpp_single_stream(ns.gguf, ns.prompt_len, ns.output_len, ns.threads, ns.seed, ns.repeats)
        else:
            r = llamacpp_batched(ns.gguf, ns.batch, ns.prompt_len, ns.output_len, ns.threads, ns.seed)
    except Exception as err:
        print(json.dumps({"mode": ns.mode, "error": f"{type(err).__name__}: {err}"}), flush=True)
        return 1
    print(json.dumps({**record, **r}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
