"""What each `mistral-serve` subcommand does, once its arguments are parsed."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from typing import Callable, TextIO

from .config import ModelConfig, RunConfigs
from .model.errors import CheckpointError


class UserError(Exception):
    """A problem the user can fix: printed as one line, exit code 2."""


def _load(cfg: ModelConfig):
    from .loading import load

    try:
        loaded = load(cfg)
    except (CheckpointError, ValueError) as err:
        raise UserError(str(err)) from None
    if loaded.card.demo:
        print(f"Loaded the demo model ({loaded.card.parameter_label} parameters, random weights: "
              "it produces random text). Use --model to load real weights.", file=sys.stderr)
    return loaded


def _engine(loaded):
    from .config import EngineConfig
    from .engine.engine import LLMEngine

    return LLMEngine(loaded.model, loaded.tokenizer, EngineConfig(max_num_seqs=1))


def stream_answer(engine, prompt_ids: list[int], ns: argparse.Namespace, out: TextIO = sys.stdout) -> str:
    """Generate and print an answer piece by piece; Ctrl-C ends the answer early."""
    from .engine.params import ParamError, SamplingParams

    room = engine.max_model_len - len(prompt_ids)
    try:
        params = SamplingParams(temperature=ns.temperature, seed=ns.seed,
                                max_tokens=max(1, min(ns.max_tokens, room)))
        request_id = engine.add_request(prompt_ids, params)
    except ParamError as err:
        raise UserError(str(err)) from None
    text = []
    try:
        while engine.has_unfinished():
            for output in engine.step():
                for delta in output.deltas:
                    out.write(delta.text)
                    out.flush()
                    text.append(delta.text)
    except KeyboardInterrupt:
        engine.abort(request_id)
        out.write(" [stopped]")
    out.write("\n")
    out.flush()
    return "".join(text)


def _chat_prompt(loaded, messages: list[dict]) -> list[int]:
    from .tokenizer import ChatTemplateError

    try:
        return loaded.tokenizer.encode_chat(messages)
    except ChatTemplateError as err:
        raise UserError(str(err)) from None


def cmd_chat(ns: argparse.Namespace, configs: RunConfigs) -> int:
    # Ctrl-C must stop an answer even when this process inherited SIGINT as ignored, as every
    # program started from a background job of a non-interactive shell does (Python then keeps
    # the ignore instead of raising KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    loaded = _load(configs.model)
    engine = _engine(loaded)
    print(f"Chatting with {loaded.card.display_name}. Ctrl-C stops an answer; Ctrl-D or /exit quits; "
          "/clear forgets the conversation.", file=sys.stderr)
    history: list[dict] = [{"role": "system", "content": ns.system}] if ns.system else []
    base = len(history)
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit", "/bye"):
            return 0
        if text == "/clear":
            del history[base:]
            continue
        history.append({"role": "user", "content": line})
        try:
            answer = stream_answer(engine, _chat_prompt(loaded, history), ns)
        except UserError as err:
            history.pop()
            print(f"error: {err}", file=sys.stderr)
            continue
        history.append({"role": "assistant", "content": answer})


def cmd_generate(ns: argparse.Namespace, configs: RunConfigs) -> int:
    loaded = _load(configs.model)
    if ns.raw:
        prompt = loaded.tokenizer.encode(ns.prompt, bos=True)
    else:
        messages = ([{"role": "system", "content": ns.system}] if ns.system else [])
        prompt = _chat_prompt(loaded, messages + [{"role": "user", "content": ns.prompt}])
    stream_answer(_engine(loaded), prompt, ns)
    return 0


def cmd_init(ns: argparse.Namespace, configs: RunConfigs) -> int:
    from .model.args import preset
    from .model.hardware import DTYPES
    from .random_checkpoint import write_random_checkpoint

    if ns.out.exists() and any(ns.out.iterdir()):
        raise UserError(f"{ns.out}: folder exists and is not empty")
    from .model.quant import QuantConfig

    args = preset(ns.preset)
    quant = QuantConfig(ns.quantize, ns.group_size)
    if quant.mode != "none" and ns.layout != "hf":
        raise UserError("pre-quantized checkpoints use the hf layout (drop --layout mistral)")
    write_random_checkpoint(args, ns.out, dtype=DTYPES[ns.dtype], layout=ns.layout, seed=ns.seed, quant=quant)
    print(f"wrote a random {ns.preset} checkpoint ({args.n_params / 1e9:.2f}B parameters, {ns.dtype}, "
          f"{ns.layout} layout, quantization {quant.label}) to {ns.out}")
    return 0


def _store(ns: argparse.Namespace):
    from .config import default_data_dir
    from .server.store import Store

    return Store((ns.data_dir or default_data_dir()) / "mistral-serve.db")


def cmd_serve(ns: argparse.Namespace, configs: RunConfigs) -> int:
    from .server.run import serve

    try:
        return serve(configs.server, configs.model, configs.engine, _store(ns), verbose=ns.verbose)
    except ValueError as err:
        raise UserError(str(err)) from None


def cmd_keys(ns: argparse.Namespace, configs: RunConfigs) -> int:
    store = _store(ns)
    if ns.keys_command == "create":
        try:
            key = store.create_key(ns.name)
        except ValueError as err:
            raise UserError(str(err)) from None
        print(key)
        print(f"Key {ns.name!r} created. It is shown only once: store it now.", file=sys.stderr)
    elif ns.keys_command == "list":
        import datetime as dt

        for k in store.list_keys():
            created = dt.datetime.fromtimestamp(k.created).strftime("%Y-%m-%d %H:%M")
            state = "revoked " + dt.datetime.fromtimestamp(k.revoked).strftime("%Y-%m-%d %H:%M") if k.revoked else "active"
            print(f"{k.name}\tcreated {created}\t{state}")
    elif not store.revoke_key(ns.name):
        raise UserError(f"no active key named {ns.name!r}")
    else:
        print(f"Key {ns.name!r} revoked.", file=sys.stderr)
    return 0


def cmd_usage(ns: argparse.Namespace, configs: RunConfigs) -> int:
    rows = _store(ns).usage()
    print(f"{'key':<20} {'day':<10} {'requests':>8} {'prompt tokens':>14} {'completion tokens':>18}")
    for key, day, requests, prompt, completion in rows:
        print(f"{key:<20} {day:<10} {requests:>8} {prompt:>14} {completion:>18}")
    return 0


def cmd_bench(ns: argparse.Namespace, configs: RunConfigs) -> int:
    from pathlib import Path

    from .bench.run import run_bench
    from .config import QUANTIZE_CHOICES, BenchConfig, default_data_dir
    from .model.args import preset
    from .model.hardware import DTYPES
    from .options import from_options
    from .random_checkpoint import write_random_checkpoint

    data_dir = ns.data_dir or default_data_dir()
    try:
        concurrency = tuple(int(c) for c in ns.concurrency.split(","))
    except ValueError:
        raise UserError(f"--concurrency must be comma-separated integers, got {ns.concurrency!r}") from None
    # Random shapes run in each mode; a checkpoint of the user's (a GGUF file, say) as it is
    # (auto), unless --quantize says otherwise.
    shape_modes = (ns.quantize or "none,int8,int4").split(",")
    model_modes = (ns.quantize or "auto").split(",")
    bad = [m for m in shape_modes + model_modes if m not in QUANTIZE_CHOICES]
    if bad:
        raise UserError(f"--quantize takes {', '.join(QUANTIZE_CHOICES)} (comma-separated), got {bad[0]!r}")
    folders: list[tuple[str, str | None]] = []
    for name in [s for s in ns.shapes.split(",") if s]:
        if name == "demo":
            folders.append(("demo shape", None))
            continue
        try:
            args = preset(name)
        except ValueError as err:
            raise UserError(str(err)) from None
        folder = data_dir / "bench" / name
        if not (folder / "config.json").is_file():
            print(f"writing a random {name} checkpoint to {folder} (once)", file=sys.stderr)
            write_random_checkpoint(args, folder, dtype=DTYPES["bfloat16"], seed=0)
        folders.append((f"{name} shape", str(folder)))
    runs = [(label, folder, shape_modes) for label, folder in folders] + [(m, m, model_modes) for m in ns.model]
    models = [(label, from_options(ns, ModelConfig, model=folder, data_dir=data_dir, quantize=mode))
              for label, folder, modes in runs for mode in modes]
    try:
        http_clients = tuple(int(c) for c in ns.http_clients.split(","))
        peer_batches = tuple(int(c) for c in ns.peer_batches.split(","))
        roof_lens = tuple(int(c) for c in ns.roof_prompt_lens.split(",") if c)
    except ValueError:
        raise UserError("--http-clients, --peer-batches and --roof-prompt-lens must be comma-separated integers") from None
    suites = tuple(s for s in ns.suites.split(",") if s)
    if not set(suites) <= {"kernels", "engine", "grammar", "http", "peers", "avx2"}:
        raise UserError(f"--suites takes kernels, engine, grammar, http, peers and avx2, got {ns.suites!r}")
    try:
        bench = BenchConfig(concurrency, ns.prompt_len, ns.output_len, ns.prefix_len, http_clients=http_clients,
                            peer_batches=peer_batches, suites=suites, roof_prompt_lens=roof_lens,
                            target_step_ms=ns.target_step_ms, llamacpp_avx2_python=ns.llamacpp_avx2_python)
    except ValueError as err:
        raise UserError(str(err)) from None
    out = None if str(ns.out) == "-" else Path(ns.out)
    command = shlex.join(["mistral-serve", *getattr(ns, "argv", ["bench"])])
    print(run_bench(models, bench, out, command))
    return 0


COMMANDS: dict[str | None, Callable[..., int]] = {
    "serve": cmd_serve, None: cmd_serve, "chat": cmd_chat, "generate": cmd_generate, "init": cmd_init, "bench": cmd_bench,
    "keys": cmd_keys, "usage": cmd_usage,
}


def run(command: str | None, ns: argparse.Namespace, configs: RunConfigs) -> int:
    return COMMANDS[command](ns, configs)
