"""Run-time configuration shared by the command line, the engine and the server."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .options import option


def default_data_dir() -> Path:
    """`$MISTRAL_SERVE_DATA_DIR`, else `$XDG_DATA_HOME/mistral-serve`, else ~/.local/share/mistral-serve."""
    if env := os.environ.get("MISTRAL_SERVE_DATA_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "mistral-serve"


QUANTIZE_CHOICES = ("auto", "none", "int8", "int4")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which checkpoint to load and how. Fields made with `option` are command-line options too
    (options.py): their defaults and help live here only."""

    model: str | None = option(
        None, "checkpoint folder, a .gguf file, ollama:NAME[:TAG] (Ollama's local store) or a Hugging Face "
        "hub id (owner/name[@revision]); default: the built-in demo model (random weights)")
    dtype: str = option("auto", "compute dtype", choices=DTYPE_CHOICES)
    device: str = option("auto", "auto = CUDA when available", choices=DEVICE_CHOICES)
    served_model_name: str | None = option(None, "model id to answer to (default: the catalog id)")
    data_dir: Path = Path()
    quantize: str = option(
        "auto", "weight-only quantization at load time. auto: float checkpoints stay float, quantized ones "
        "(GGUF, pre-quantized) keep about their size; none: float weights in the compute dtype, dequantized "
        "from any GGUF type; int8; int4", choices=QUANTIZE_CHOICES)
    group_size: int = option(32, "int4 group size", choices=(32, 64, 128, 256))
    cpu_kernels: str = option(
        "auto", "our compiled CPU code (quantized and bf16 matmuls, and the fused RMSNorm and rotary): auto = "
        "our AVX-512 or AVX2 kernels, as the CPU has them (compiled on first use), else PyTorch's; stock = "
        "PyTorch's only, nothing of ours is built or loaded; avx512 or avx2 = that build of ours (avx2 runs on any "
        "AVX2 CPU: how an AVX-512 machine measures what AVX2 machines get)", choices=("auto", "stock", "avx512", "avx2"))
    chat_template: str = option(
        "auto", "auto: mistral-common for Mistral's own checkpoints, else the checkpoint's own Jinja template; "
        "mistral; checkpoint; or a file holding a Jinja template", metavar="auto|mistral|checkpoint|PATH")

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.device not in DEVICE_CHOICES:
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_memory(spec: str) -> int | float:
    """'4GiB', '512MB', '2g', '1000000' -> bytes (int); '0.3' -> a fraction of free memory (float)."""
    text = spec.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"cannot read a memory size from {spec!r} (examples: 4GiB, 512MB, 0.5)") from None
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r} in {spec!r} (use B, KB, MB, GB, KiB, MiB, GiB)")
    if unit == "" and 0 < value <= 1:
        return value
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {spec!r}")
    return int(value * _UNITS[unit])


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the engine batches and caches. See the README's Engine section for the trade-offs."""

    block_size: int = option(16, "tokens per KV cache block")
    kv_cache_memory: str | None = option(
        None, "KV cache size: bytes (4GiB, 512MB) or a fraction of free memory (0.5); default: 90%% of free GPU "
        "memory, or min(4 GiB, half the free RAM) on CPU")
    max_num_seqs: int = option(64, "sequences decoded together in one step")
    max_num_batched_tokens: int = option(512, "tokens computed per engine step, prefill chunks included")
    target_step_ms: float = option(
        100.0, "while streams decode, prefill chunks are cut so that a step is predicted to take at most this "
        "many milliseconds, or twice the decodes alone where that is more (the prediction is learned from the "
        "steps run); 0 = off: chunks are bounded by --max-num-batched-tokens only")
    enable_prefix_caching: bool = option(True, "turn prefix caching off", flag="--no-prefix-caching")
    max_model_len: int | None = option(None, "context length cap (default: the model's)")

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size > 1024:
            raise ValueError(f"block_size must be between 1 and 1024, got {self.block_size}")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be positive")
        if not math.isfinite(self.target_step_ms) or self.target_step_ms < 0:
            raise ValueError(f"target_step_ms must be a number of milliseconds, 0 or more (0 turns the step-time "
                             f"target off), got {self.target_step_ms}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be at least 2, got {self.max_model_len}")
        if self.kv_cache_memory is not None:
            parse_memory(self.kv_cache_memory)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP server's own settings."""

    host: str = option("127.0.0.1", "address to listen on")
    port: int = option(8000, "port to listen on")
    api_key: str | None = option(None, "a single static API key (also MISTRAL_SERVE_API_KEY)",
                                 env="MISTRAL_SERVE_API_KEY")
    data_dir: Path = Path()
    max_queue: int = option(128, "requests allowed to wait beyond the running batch before 429")
    allow_unauthenticated: bool = option(False, "allow listening on a non-loopback address with no API key")
    log_content: bool = option(False, "store message content in the generation log (off: only counts and timings)")
    max_body_bytes: int = option(4 * 1024 * 1024, "largest request body in bytes")
    body_timeout: float = option(30.0, "seconds a request body may take to arrive in full before 408")
    default_max_tokens: int | None = option(
        None, "cap on generated tokens when a request sets none (default: up to the context end; 512 for the demo)")
    shutdown_timeout: float = option(30.0, "seconds running requests get to finish after SIGTERM")
    allowed_origins: tuple[str, ...] = option(
        (), "web origins (scheme://host[:port]) whose pages may call the API from a browser (CORS); '*' for any",
        metavar="ORIGIN")
    allowed_hosts: tuple[str, ...] = option(
        (), "Host names accepted besides the loopback ones (a loopback server refuses others: DNS rebinding); "
        "'*' for any", metavar="HOST")
    response_retention_days: float = option(
        30.0, "days a stored response (/v1/responses with store: true, OpenAI's default) is kept")

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if self.body_timeout <= 0:
            raise ValueError("body_timeout must be positive")
        if self.default_max_tokens is not None and self.default_max_tokens < 1:
            raise ValueError("default_max_tokens must be positive")
        for origin in self.allowed_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"allowed origin {origin!r} is not scheme://host[:port] (or '*')")
        if self.response_retention_days <= 0:
            raise ValueError("response_retention_days must be positive")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What `mistral-serve bench` measures (its options default to these)."""

    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    prompt_len: int = 64
    output_len: int = 32
    prefix_len: int = 2000  # shared-prefix TTFT test length (0: skip it)
    max_num_batched_tokens: int = EngineConfig().max_num_batched_tokens
    http_clients: tuple[int, ...] = (1, 8, 32)
    peer_batches: tuple[int, ...] = (1, 8, 32)
    # "avx2" (our AVX2 build, PyTorch's stock kernels and llama.cpp held to AVX2, single stream) is
    # left out by default: two more loads of every model, and a llama.cpp venv of its own.
    suites: tuple[str, ...] = ("kernels", "engine", "grammar", "http", "peers")
    # M of the engine suite's prefill-against-library-GEMM measurement (bench/roof.py); (): skip it.
    roof_prompt_lens: tuple[int, ...] = (512,)
    # The engine's step-time target (EngineConfig.target_step_ms) for the server of the HTTP suite
    # and the engines of the in-process suites.
    target_step_ms: float = EngineConfig().target_step_ms
    # The python of the venv holding llama.cpp built without AVX-512 (the avx2 suite); None:
    # <repository root>/.venv-llamacpp-avx2/bin/python (`make llamacpp-avx2`).
    llamacpp_avx2_python: str | None = None

    def __post_init__(self) -> None:
        if any(m < 1 for m in self.roof_prompt_lens):
            raise ValueError(f"--roof-prompt-lens must be positive token counts, got {self.roof_prompt_lens}")
        if not math.isfinite(self.target_step_ms) or self.target_step_ms < 0:
            raise ValueError(f"--target-step-ms must be a number of milliseconds, 0 or more (0: off), "
                             f"got {self.target_step_ms}")


@dataclass(frozen=True, slots=True)
class RunConfigs:
    """What one command runs with; None where the command has no use for it."""

    model: ModelConfig | None = None
    server: ServerConfig | None = None
    engine: EngineConfig | None = None
