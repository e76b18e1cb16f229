"""Markdown for roof.py's measurements: our prefill matmuls against the library GEMM at the same
M, and our single-stream decode against the memory-bandwidth limit."""

from __future__ import annotations

from .roof import DecodeLimit, RoofResult


def _rate(flops: int, seconds: float) -> str:
    return f"{flops / seconds / 1e9:.0f}" if seconds > 0 else "n/a"


def prefill_roof_lines(results: list[RoofResult]) -> list[str]:
    """One table: for each M, a row per layer kind and one for all the matmuls together."""
    if not results:
        return []
    first = results[0]
    kinds = [r.kind for r in first.roofs]
    lines = [f"Prefill matmuls against the library GEMM at the same M (rows = prompt tokens, one chunk), "
             f"on the model's Linear shapes ({', '.join(f'{s.name} {s.n}x{s.k} x{s.count}' for s in first.shapes)}; "
             "the output layer, which prefill runs on one row, left out). Library: "
             f"{' and '.join(f'`{k}`' for k in kinds)} on random inputs, best of 3 calls or more (small ones "
             "repeated for 50 ms). Ours: the time inside the model's Linear layers during one real prefill "
             f"(forward hooks around each), GFLOP/s of the same work; ours / roof against `{first.reference}`.", "",
             f"| M | layers | GFLOP | {' | '.join(f'{k} GFLOP/s' for k in kinds)} | ours GFLOP/s | ours / roof |",
             "| --- | --- | --- | " + "--- | " * len(kinds) + "--- | --- |"]
    for r in results:
        for s in r.shapes:
            ours = r.ours.linear.get(s.name, 0.0)
            roof = r.roof().seconds[s.name]
            lines.append(f"| {r.ours.m} | {s.name} | {r.flops(s.name) / 1e9:.1f} | "
                         + " | ".join(_rate(r.flops(s.name), g.seconds[s.name]) for g in r.roofs)
                         + f" | {_rate(r.flops(s.name), ours)} | {roof / ours:.2f} |")
        total = sum(r.ours.linear.values())
        lines.append(f"| {r.ours.m} | **all** | {r.flops() / 1e9:.1f} | "
                     + " | ".join(_rate(r.flops(), g.total) for g in r.roofs)
                     + f" | {_rate(r.flops(), total)} | **{r.ratio:.2f}** |")
    lines.append("")
    for r in results:
        total = sum(r.ours.linear.values())
        lines.append(f"Whole prefill of {r.ours.m} tokens: {r.ours.whole:.2f} s, {_rate(r.flops(), r.ours.whole)} "
                     f"GFLOP/s of matmul work over all of it; the Linear layers took {total:.2f} s "
                     f"({total / r.ours.whole:.0%}), attention, norms and the rest {r.ours.whole - total:.2f} s.")
    return [*lines, ""]


def decode_limit_lines(d: DecodeLimit, context: int) -> list[str]:
    return [f"Decode against the memory-bandwidth limit: a plain sum over 512 MiB reads at "
            f"{d.read_bytes_per_s / 1e9:.1f} GB/s; one token of one stream must read {d.token_bytes / 1e6:.0f} MB "
            f"(every weight it multiplies, and its KV cache at a {context}-token context), so at most "
            f"{d.limit_tokens_per_s:.1f} tok/s; ours {d.ours_tokens_per_s:.1f} tok/s = **{d.fraction:.2f}** of that.", ""]
