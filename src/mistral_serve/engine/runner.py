"""The engine's only tensor code: how many KV blocks fit, and a scheduled batch in, the logits of
the sampled rows out (and, for a prompt being scored, its prompt logprobs)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import EngineConfig, parse_memory
from ..model.attention import PagedKVCache
from ..model.hardware import available_memory
from ..model.transformer import Transformer
from .prompt_logprobs import score_rows
from .scheduler import Batch

DEFAULT_CPU_KV_BYTES = 4 * 1024**3
# Prompt positions scored at once (engine/prompt_logprobs.py): bounds the logits held in memory.
SCORE_ROWS = 256


def kv_bytes_per_block(model: Transformer, block_size: int) -> int:
    a = model.args
    return 2 * a.n_layers * block_size * a.n_kv_heads * a.head_dim * model.dtype.itemsize


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


class ModelRunner:
    def __init__(self, model: Transformer, num_blocks: int, block_size: int) -> None:
        a = model.args
        self.model = model
        self.device = model.device
        # Our paged decode attention on the CPU, of the model's `--cpu-kernels` build; never asked
        # for under stock.
        kernels = model.cpu_kernels()
        self.cache = PagedKVCache(a.n_layers, num_blocks, block_size, a.n_kv_heads, a.head_dim,
                                  a.sliding_window, model.dtype, model.device, kernels)

    @torch.inference_mode()
    def run(self, batch: Batch, sample_rows: list[int]) -> Tensor:
        """Compute this step's tokens; return float32 logits (len(sample_rows), V) for the last
        token of each batch item listed in `sample_rows`."""
        tokens: list[int] = []
        positions: list[int] = []
        steps = []
        last: list[int] = []
        for (seq, n), table in zip(batch.items, batch.tables, strict=True):
            start = seq.num_computed
            all_tokens = seq.tokens
            tokens.extend(all_tokens[start:start + n])
            positions.extend(range(start, start + n))
            steps.append((table, start, n))
            last.append(len(tokens) - 1)
        self.cache.begin_step(steps)
        hidden = self.model(torch.tensor(tokens, dtype=torch.long, device=self.device),
                            torch.tensor(positions, dtype=torch.long, device=self.device), self.cache)
        self._score_prompts(batch, hidden, [row - n + 1 for row, (_, n) in zip(last, batch.items)])
        rows = torch.tensor([last[i] for i in sample_rows], dtype=torch.long, device=self.device)
        return self.model.logits(hidden[rows])

    def _score_prompts(self, batch: Batch, hidden: Tensor, first_rows: list[int]) -> None:
        """Prompt logprobs for the items scoring their prompt, into `batch.prompt_logprobs`.
        hidden (N, dim) is the step's flat batch; item i's tokens start at row first_rows[i]."""
        for i in batch.scoring:
            seq, n = batch.items[i]
            scores = seq.prompt_scores
            positions = scores.scored_positions(seq.num_computed, n)
            targets = torch.tensor(scores.targets(positions), dtype=torch.long, device=self.device)
            row0 = first_rows[i] + positions.start - seq.num_computed
            scored = []
            # A slice at a time: logits for a whole chunk are (n, V) float32, 64 MiB per 512
            # tokens of a 32k vocabulary, and log_softmax doubles it.
            for a in range(0, len(positions), SCORE_ROWS):
                rows = hidden[row0 + a:row0 + min(a + SCORE_ROWS, len(positions))]
                scored += score_rows(self.model.logits(rows), targets[a:a + SCORE_ROWS], scores.top)
            batch.prompt_logprobs[i] = (positions, scored)
