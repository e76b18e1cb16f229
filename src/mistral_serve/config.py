"""Run-time configuration shared by the command line, the engine and the server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    """`$MISTRAL_SERVE_DATA_DIR`, else `$XDG_DATA_HOME/mistral-serve`, else ~/.local/share/mistral-serve."""
    if env := os.environ.get("MISTRAL_SERVE_DATA_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "mistral-serve"


QUANTIZE_CHOICES = ("auto", "none", "int8", "int4")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which checkpoint to load and how."""

    # A local folder or .gguf file, ollama:NAME[:TAG], a Hugging Face hub id
    # (owner/name[@revision]), or None for the demo.
    model: str | None = None
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda
    served_model_name: str | None = None
    data_dir: Path = Path()
    # Weight-only quantization at load time: auto keeps a checkpoint about its own size (float
    # stays float, a GGUF Q4 file becomes int4); none = float weights; int8 | int4.
    quantize: str = "auto"
    group_size: int = 32  # int4 group size
    cpu_kernels: str = "auto"  # auto (ours where the CPU has AVX-512) | stock (PyTorch's)
    # auto | mistral (mistral-common) | checkpoint (its own Jinja template) | a template file
    chat_template: str = "auto"

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.device not in ("auto", "cpu", "cuda"):
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

    block_size: int = 16  # tokens per KV cache block
    # Bytes ('4GiB'), a fraction of free memory ('0.5'), or None for the device's default.
    kv_cache_memory: str | None = None
    max_num_seqs: int = 64  # sequences decoded together in one step
    max_num_batched_tokens: int = 512  # tokens computed per step (prefill chunks + decodes)
    enable_prefix_caching: bool = True
    max_model_len: int | None = None  # None = the model's context length

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size > 1024:
            raise ValueError(f"block_size must be between 1 and 1024, got {self.block_size}")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be positive")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be at least 2, got {self.max_model_len}")
        if self.kv_cache_memory is not None:
            parse_memory(self.kv_cache_memory)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP server's own settings."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # a single static key (also MISTRAL_SERVE_API_KEY)
    data_dir: Path = Path()
    max_queue: int = 128  # requests waiting beyond the running batch before 429
    allow_unauthenticated: bool = False  # listen on a non-loopback address without any key
    log_content: bool = False  # store message content in the generation log
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 30.0  # seconds a request body may take to arrive in full (then 408)
    # Cap on generated tokens when a request sets none (None: up to the end of the context).
    default_max_tokens: int | None = None
    shutdown_timeout: float = 30.0  # seconds running requests get to finish on SIGTERM

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if self.body_timeout <= 0:
            raise ValueError("body_timeout must be positive")
        if self.default_max_tokens is not None and self.default_max_tokens < 1:
            raise ValueError("default_max_tokens must be positive")

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")
