"""bench/context_bench.py on a tiny shape and short contexts: both decode-attention paths timed at
every context, and the report that renders them."""

import pytest

from mistral_serve.bench import context_bench
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.kernels import cpu_kernels

TINY = ModelArgs(dim=128, n_layers=2, head_dim=32, hidden_dim=256, n_heads=4, n_kv_heads=2, vocab_size=2048,
                 max_seq_len=1024)


@pytest.mark.parametrize("quantize", ["none", "int4"])
def test_context_bench_times_both_paths_at_every_context(quantize):
    bench = context_bench.run("tiny", quantize, contexts=(16, 300), steps=2, dtype="float32", args=TINY)
    paths = ["kernel", "gather"] if cpu_kernels() is not None else ["gather"]
    assert sorted((r.context, r.path) for r in bench.results) == sorted((c, p) for c in (16, 300) for p in paths)
    assert all(len(r.step_ms) == 2 and r.tokens_per_s > 0 for r in bench.results)
    text = "\n".join(bench.markdown())
    assert "| context | kernel ms |" in text and "| 300 |" in text
    for path in paths:
        assert bench.ratio(path) > 0 and f"{path}: tok/s at 300 tokens / at 16" in text
    assert ("kernel path not measured" in text) == (cpu_kernels() is None)


def test_context_bench_refuses_a_context_beyond_the_shape():
    with pytest.raises(ValueError, match="beyond"):
        context_bench.run("tiny", "none", contexts=(16, 4096), steps=1, args=TINY)


def test_context_bench_command_line_prints_the_table(capsys):
    assert context_bench.main(["--shape", "demo", "--quantize", "int8", "--contexts", "8,40", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "demo shape" in out and "| 40 |" in out
