"""The served model as Ollama describes its models: /api/tags, /api/show and /api/ps.

What Ollama reads from a model's GGUF file and Modelfile is said here from the loaded model:
its shape (`model_info`, under the keys Ollama uses for Mistral's architecture, "llama"), its
size in memory, the prompt of one turn as the chat template renders it (`template`, in the Go
template subset /api/generate takes; control tokens such as [INST] are spelled as text there,
for display), and the sampling defaults the dialect applies (`parameters`).
"""

from __future__ import annotations

import hashlib

from ...loading import LoadedModel
from ..errors import APIError
from ..protocol import ChatCompletionRequest
from ..state import Serving
from ..tools import plan_tools
from .ollama import DEFAULTS, rfc3339, served_id

FAMILY = "llama"  # Ollama's architecture name for Mistral 7B's
FOREVER = "2999-12-31T23:59:59Z"  # expires_at: the model stays loaded
_SYSTEM, _PROMPT = "{{ .System }}", "{{ .Prompt }}"
_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def ollama_name(loaded: LoadedModel) -> str:
    return f"{loaded.card.id}:latest"


def parameter_size(n: int) -> str:
    """7241732096 -> "7.2B", 19794176 -> "19.8M" (as Ollama writes sizes)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + unit
    return str(n)


def quantization_level(loaded: LoadedModel) -> str:
    label = loaded.card.quantization
    if " from " in label:  # a GGUF file's own type, e.g. "int4 + int8 (weight-only), from Q4_K_M"
        return label.rsplit(" from ", 1)[1].strip()
    if label.startswith(("int8", "int4")):
        return label[:4].upper()
    return _DTYPES.get(str(loaded.dtype).removeprefix("torch."), str(loaded.dtype).removeprefix("torch.").upper())


def details(loaded: LoadedModel) -> dict:
    return {"parent_model": "", "format": "gguf" if loaded.files.layout == "gguf" else "safetensors",
            "family": FAMILY, "families": [FAMILY], "parameter_size": parameter_size(loaded.card.parameter_count),
            "quantization_level": quantization_level(loaded)}


def size(loaded: LoadedModel) -> int:
    """The weights' bytes in memory, as loaded (quantized or not)."""
    tensors = list(loaded.model.parameters()) + list(loaded.model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def digest(loaded: LoadedModel) -> str:
    """An identifier of what is served (not a hash of the weight files, which may be many GB)."""
    card = loaded.card
    what = f"{card.id}\n{card.quantization}\n{card.parameter_count}\n{loaded.dtype}\n{loaded.tokenizer.version}"
    return hashlib.sha256(what.encode()).hexdigest()


def modified_at(loaded: LoadedModel) -> str:
    try:
        mtime = loaded.files.config_file.stat().st_mtime
    except OSError:
        mtime = 0.0
    return rfc3339(mtime)


def capabilities(loaded: LoadedModel) -> list[str]:
    """"completion", and "tools" when the chat path takes tools with this tokenizer (its decision)."""
    probe = ChatCompletionRequest.model_validate({
        "model": loaded.card.id, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "probe"}}]})
    try:
        plan_tools(probe, loaded.tokenizer)
    except APIError:
        return ["completion"]
    return ["completion", "tools"]


def _text(loaded: LoadedModel, messages: list[dict]) -> str:
    tok = loaded.tokenizer
    ids = tok.encode_chat(messages)
    if tok.bos_id is not None and ids[:1] == [tok.bos_id]:
        ids = ids[1:]  # Ollama's templates leave it out: the tokenizer adds it
    return b"".join(tok.token_bytes(i) for i in ids).decode("utf-8", errors="replace")


def one_turn_template(loaded: LoadedModel) -> str:
    """The chat template's prompt for a system message and one user message, as a Go template
    (the subset /api/generate takes): rendered with placeholders, then the system part found by
    rendering without one. "" if the template does not keep the placeholders as written."""
    try:
        with_system = _text(loaded, [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _PROMPT}])
        without = _text(loaded, [{"role": "user", "content": _PROMPT}])
    except Exception:  # a template that cannot render this conversation
        return ""
    if with_system.count(_PROMPT) != 1 or without.count(_PROMPT) != 1 or _SYSTEM not in with_system:
        return ""
    before, after = with_system.split(_PROMPT)
    plain_before, plain_after = without.split(_PROMPT)
    if after != plain_after:
        return f"{{{{ if .System }}}}{with_system}{{{{ else }}}}{without}{{{{ end }}}}"
    common = 0
    while common < min(len(before), len(plain_before)) and before[common] == plain_before[common]:
        common += 1
    otherwise = plain_before[common:]
    return (before[:common] + "{{ if .System }}" + before[common:] + (f"{{{{ else }}}}{otherwise}" if otherwise else "")
            + "{{ end }}" + _PROMPT + after)


def parameters(serving: Serving) -> list[tuple[str, object]]:
    """The sampling defaults the dialect applies, and the context."""
    return [*DEFAULTS.items(), ("num_ctx", serving.engine.max_model_len)]


def model_info(loaded: LoadedModel) -> dict:
    a, tok = loaded.args, loaded.tokenizer
    info = {"general.architecture": FAMILY, "general.name": loaded.card.display_name,
            "general.parameter_count": loaded.card.parameter_count,
            f"{FAMILY}.context_length": loaded.card.context_length, f"{FAMILY}.embedding_length": a.dim,
            f"{FAMILY}.block_count": a.n_layers, f"{FAMILY}.feed_forward_length": a.hidden_dim,
            f"{FAMILY}.attention.head_count": a.n_heads, f"{FAMILY}.attention.head_count_kv": a.n_kv_heads,
            f"{FAMILY}.attention.key_length": a.head_dim, f"{FAMILY}.attention.value_length": a.head_dim,
            f"{FAMILY}.attention.layer_norm_rms_epsilon": a.norm_eps, f"{FAMILY}.rope.freq_base": a.rope_theta,
            f"{FAMILY}.rope.dimension_count": a.head_dim, f"{FAMILY}.vocab_size": a.vocab_size,
            "tokenizer.ggml.eos_token_id": tok.eos_id}
    if tok.bos_id is not None:
        info["tokenizer.ggml.bos_token_id"] = tok.bos_id
    if a.sliding_window:
        info[f"{FAMILY}.attention.sliding_window"] = a.sliding_window
    return info


def tags(serving: Serving) -> dict:
    loaded, _ = serving.require_ready()
    name = ollama_name(loaded)
    return {"models": [{"name": name, "model": name, "modified_at": modified_at(loaded), "size": size(loaded),
                        "digest": digest(loaded), "details": details(loaded)}]}


def show(serving: Serving, name: str) -> dict:
    served_id(serving, name)
    loaded = serving.loaded
    template = one_turn_template(loaded)
    modelfile = [f"# Modelfile generated by mistral-serve for {ollama_name(loaded)}. The model is given on the",
                 "# command line (--model), not built from a Modelfile; the server applies the checkpoint's",
                 f"# own chat template ({loaded.card.chat_template or loaded.tokenizer.version}).",
                 f"FROM {loaded.card.id}"]
    if template:
        modelfile.append(f'TEMPLATE """{template}"""')
    rows = parameters(serving)
    modelfile += [f"PARAMETER {name} {value}" for name, value in rows]
    out = {"modelfile": "\n".join(modelfile), "parameters": "\n".join(f"{n:<30} {v}" for n, v in rows),
           "template": template,
           "details": details(loaded), "model_info": model_info(loaded), "capabilities": capabilities(loaded),
           "modified_at": modified_at(loaded)}
    if loaded.card.license:
        out["license"] = loaded.card.license
    return out


def ps(serving: Serving) -> dict:
    loaded, engine = serving.require_ready()
    name = ollama_name(loaded)
    total = size(loaded)
    return {"models": [{"name": name, "model": name, "size": total, "digest": digest(loaded),
                        "details": details(loaded), "expires_at": FOREVER,
                        "size_vram": 0 if loaded.device.type == "cpu" else total,
                        "context_length": engine.max_model_len}]}
