"""Bad checkpoints: a server started on a broken model folder answers 503 while it tries, then
prints one clear error line and exits with status 2, never a traceback."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest

from support.figures import report
from support.server_process import ServerProcess


def truncated_weights(folder) -> str:
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    return "model.safetensors"


def shapes_disagree(folder) -> str:
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 128  # the MLP tensors keep their shapes
    (folder / "config.json").write_text(json.dumps(config))
    return "gate_proj"


def other_vocabulary(folder) -> str:
    from mistral_serve.tokenizer import bundled_tokenizer_file

    (folder / "tokenizer.model.v3").unlink()  # the demo's 32768-token v3 tokenizer ...
    shutil.copyfile(bundled_tokenizer_file("v1"), folder / "tokenizer.model")  # ... swapped for v1's 32000
    return "32000"


@pytest.mark.parametrize("breakage", [truncated_weights, shapes_disagree, other_vocabulary],
                         ids=["truncated safetensors", "config shapes disagree", "tokenizer vocabulary differs"])
def test_a_broken_checkpoint_is_one_error_line_and_exit_code_2(tmp_path, demo_data_dir, breakage):
    from mistral_serve.random_checkpoint import DEMO_MARKER, ensure_demo

    model = tmp_path / "broken"
    shutil.copytree(ensure_demo(demo_data_dir), model)
    (model / DEMO_MARKER).unlink()
    named = breakage(model)
    data = tmp_path / "data"
    data.mkdir()
    proc = ServerProcess(data, "--model", str(model))
    health = []
    started = time.monotonic()
    try:
        while proc.proc.poll() is None and time.monotonic() - started < 90:
            try:
                r = httpx.get(proc.url + "/health", timeout=2)
                health.append((r.status_code, r.json()))
            except httpx.HTTPError:
                pass  # not listening yet, or already gone
            time.sleep(0.05)
        assert proc.proc.poll() is not None, "the server kept running on a broken checkpoint"
    finally:
        code = proc.stop()
    log = proc.log()
    errors = [line for line in log.splitlines() if line.startswith("mistral-serve: error:")]
    shown = (errors[0] if errors else log[-300:]).replace(str(model), "MODEL")
    report("bad checkpoints", f"{breakage.__name__.replace('_', ' ')}: exit code {code} after "
                              f"{time.monotonic() - started:.1f} s: {shown!r}")
    assert code == 2, log
    assert len(errors) == 1 and named in errors[0], log
    assert "Traceback" not in log
    for status, body in health:  # until it gives up, the server says it is not ready
        assert status == 503 and body["status"] in ("loading", "failed"), health
