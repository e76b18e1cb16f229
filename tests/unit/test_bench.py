"""The benchmark harness: its summary table of ratios, and a small real run on the demo shape."""

import math

from mistral_serve.bench.summary import Figures, summary_lines


def test_summary_gives_ratios_and_the_targets_verdicts():
    f = Figures(ours_decode={1: 30.0, 32: 300.0}, ours_prefill=200.0, ours_http={1: 25.0, 32: 120.0},
                cached_ttft_ratio=0.04, peak_memory_ratio=0.5, llamacpp_type="Q8_0",
                llamacpp_decode={1: 20.0}, llamacpp_prefill=400.0, llamacpp_server={32: 80.0})
    text = "\n".join(summary_lines(f))
    assert "30.0 / 20.0 = **1.50x** | ≥ 1x met" in text  # single stream vs Q8_0
    assert "200.0 / 400.0 = **0.50x**" in text  # prefill
    assert "120.0 / 80.0 = **1.50x** | ≥ 2x missed" in text  # 32 clients vs llama.cpp's server
    assert "**4.0%** | ≤ 10% met" in text
    assert "**0.50** | ≤ 1.1 met" in text
    assert "transformers" not in text  # not measured: no row


def test_summary_is_empty_without_figures():
    assert summary_lines(Figures()) == []
    assert math.isnan(Figures().ours_prefill)


def test_bench_on_the_demo_writes_a_report_with_its_summary(tmp_path):
    from mistral_serve.cli import main

    out = tmp_path / "BENCH.md"
    code = main(["bench", "--shapes", "demo", "--quantize", "int8", "--suites", "engine,http",
                 "--concurrency", "1,2", "--http-clients", "2", "--output-len", "4", "--prompt-len", "16",
                 "--prefix-len", "64", "--data-dir", str(tmp_path), "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert text.count("## demo shape") == 1
    assert "Produced by `mistral-serve bench --shapes demo --quantize int8" in text  # the command as given
    assert "matmuls: quantized: " in text  # the int8 section names the kernels it ran on
    assert "Prefill:" in text and "Prefix caching on" in text
    assert "peak / (weights + KV budget)" in text
    assert "Summary (ours / peer" in text and "cached-prefix time to first token / cold" in text
    try:
        import matplotlib  # noqa: F401  (the bench extra; make test installs only dev)
    except ImportError:
        assert not (tmp_path / "BENCH.png").exists()
    else:
        assert (tmp_path / "BENCH.png").is_file()


def test_kernel_suite_times_ours_against_stock():
    from mistral_serve.bench.kernel_bench import kernel_times
    from mistral_serve.model.dense import bf16_kernels
    from mistral_serve.model.kernels import cpu_kernels

    results = kernel_times(shapes=((64, 512),), rows=(1, 3), repeats=2)
    if cpu_kernels() is None:
        assert results == []
        return
    bf16 = [("bf16", 1), ("bf16", 3)] if bf16_kernels(512) is not None else []
    assert [(r.mode, r.rows) for r in results] == [("int8", 1), ("int8", 3), ("int4", 1), ("int4", 3), *bf16]
    assert all(r.ours_ms > 0 and r.stock_ms > 0 for r in results)
