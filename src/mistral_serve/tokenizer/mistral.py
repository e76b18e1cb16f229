"""Mistral's own tokenizers and chat formats: a thin layer over mistral-common.

mistral-common owns the Mistral chat formats (`[INST]`, system prompts, tool calls) for every
tokenizer version, so prompts are never assembled here by hand. This module adds what a server
needs around it: finding and loading the tokenizer file of a checkpoint with errors that name the
file, and turning OpenAI-style messages into a request with errors an API user can read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import mistral_common
from mistral_common.exceptions import MistralCommonException
from mistral_common.protocol.instruct.messages import Roles
from mistral_common.protocol.instruct.normalize import get_normalizer
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.protocol.instruct.validator import MistralRequestValidator, ValidationMode, get_validator
from mistral_common.tokens.tokenizers.base import TokenizerVersion
from mistral_common.tokens.tokenizers.instruct import InstructTokenizerV3
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from mistral_common.tokens.tokenizers.sentencepiece import SentencePieceTokenizer
from mistral_common.tokens.tokenizers.tekken import Tekkenizer
from pydantic import ValidationError

from .base import ChatTemplateError, Tokenizer, TokenizerError, byte_fallback_pieces
from .conversation import check_continuable, final_prefix, without_prefix_flags


# `name.model.v3`, `name.model.v7m1`: the version suffixes mistral-common understands. The
# optional `mN` part marks a multimodal variant (same text vocabulary, plus an image encoder).
_VERSIONED_SPM = re.compile(r"\.model\.v(\d+)(m\d+)?$")

# Serving-mode validation insists on a model name; it plays no part in tokenization.
_REQUEST_MODEL = "mistral-serve"

_ROLES = ("system", "developer", "user", "assistant", "tool")


def find_tokenizer_file(folder: Path) -> Path | None:
    """The tokenizer file of a checkpoint folder, or None if it has none.

    Preference: a tekken file (`*tekken*.json`), then the highest-versioned sentencepiece file
    (`*.model.vN`, v7 over v3), then a bare `tokenizer.model`. Checkpoints often ship several
    (e.g. `tokenizer.model` next to `tokenizer.model.v3`); the versioned one says which chat
    format the model was trained with, the bare one leaves mistral-common guessing v1.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file())

    tekken = [p for p in files if "tekken" in p.name and p.suffix == ".json"]
    if tekken:
        # Several tekken files are unusual; take the canonical name, else the last by name
        # (mistral-common's own files are date-stamped, so that is the newest).
        canonical = [p for p in tekken if p.name == "tekken.json"]
        return (canonical or tekken)[-1]

    versioned = [(p, m) for p in files if (m := _VERSIONED_SPM.search(p.name))]
    if versioned:
        # Highest version wins; at equal version prefer the text-only file over a multimodal
        # variant, since both tokenize text the same way.
        best, _ = max(versioned, key=lambda pm: (int(pm[1].group(1)), pm[1].group(2) is None))
        return best

    bare = folder / "tokenizer.model"
    return bare if bare.is_file() else None


def bundled_tokenizer_file(version: str) -> Path:
    """A tokenizer file shipped inside mistral-common (`mistral_common/data`).

    `version` is a sentencepiece version suffix ("v1", "v2", "v3", "v7", "v7m1") or the stem of a
    bundled tekken file ("tekken_240718"). Raises ValueError when no bundled file matches.
    """
    data = Path(mistral_common.__file__).parent / "data"
    available: dict[str, Path] = {}
    for path in sorted(data.iterdir()):
        match = _VERSIONED_SPM.search(path.name)
        if match:
            available[f"v{match.group(1)}{match.group(2) or ''}"] = path
        elif "tekken" in path.name and path.suffix == ".json":
            available[path.stem] = path
    if version not in available:
        raise ValueError(f"mistral-common bundles no tokenizer for {version!r} "
                         f"(available: {', '.join(sorted(available))})")
    return available[version]


def _load_mistral_tokenizer(path: Path) -> MistralTokenizer:
    mode = ValidationMode.serving
    if path.name.endswith(".model"):
        # mistral-common reads an unversioned `*.model` as v1. Checkpoints such as
        # Mistral-7B-Instruct-v0.3 ship their v3 vocabulary under that name too, and the v1
        # template would spell `[INST]` as plain text instead of using the control token the
        # model was trained on. A v3 vocabulary is recognisable: 32768 pieces with `[INST]`
        # as a control piece.
        spm = SentencePieceTokenizer(path)
        if spm.n_words == 32768 and spm.is_special("[INST]"):
            return _assemble_v3(path, mode)
    return MistralTokenizer.from_file(path, mode=mode)


def _assemble_v3(path: Path, mode: ValidationMode) -> MistralTokenizer:
    # The same parts MistralTokenizer.from_file puts together for a v3 sentencepiece file, only
    # with the version given instead of read from the file name. A `.model` name carries no
    # multimodal suffix, so there is no image encoder to wire in.
    version = TokenizerVersion.v3
    spm = SentencePieceTokenizer(path, tokenizer_version=version)
    return MistralTokenizer(
        InstructTokenizerV3(spm),
        validator=get_validator(version, mode=mode),
        request_normalizer=get_normalizer(version, spm.model_settings_builder),
    )


def _system_messages_anywhere(mistral: MistralTokenizer) -> MistralTokenizer:
    """The same tokenizer, its validator letting a system message follow any message.

    mistral-common's validator refuses a system message after an assistant or tool message
    ("Unexpected role 'system' after role 'assistant'"; Mistral's API answers 400 with it), yet
    agents send one there (pydantic-ai's output retry: [system, user, assistant, system, user]).
    Its normalizer and encoder already know where such a message goes: v1-v3 formats have one
    system prompt (every system message's text, joined by a blank line, put before the last
    user message; v1: the first), v7 and later encode a `[SYSTEM_PROMPT]` block in place. So only
    that one order rule changes: the order check skips system messages that follow an assistant
    or tool message (with any system messages right after them); every other rule stays.
    """
    strict = get_validator(mistral.version, mode=mistral.mode)

    class SystemAnywhere(type(strict)):  # type: ignore[misc, valid-type]
        def _validate_message_order(self, messages: list) -> None:
            checked, after_answer = [], False
            for message in messages:
                if message.role == Roles.system:
                    if after_answer:
                        continue
                else:
                    after_answer = message.role in (Roles.assistant, Roles.tool)
                checked.append(message)
            super()._validate_message_order(checked)

    validator: MistralRequestValidator = SystemAnywhere(mode=strict.mode)
    raw = mistral.instruct_tokenizer.tokenizer
    return MistralTokenizer(mistral.instruct_tokenizer, validator=validator,
                            request_normalizer=get_normalizer(mistral.version, raw.model_settings_builder))


class MistralCommonTokenizer(Tokenizer):
    """A mistral-common tokenizer file: Mistral's vocabulary and its `[INST]` chat formats.

    vocab_size is the file's own count (a model may have more embedding rows; the engine takes
    the model's width separately). stop_ids is {eos_id}: Mistral's formats end a turn with eos.
    """

    def __init__(self, path: Path, mistral: MistralTokenizer) -> None:
        """Wrap an assembled MistralTokenizer; use `from_file` to load one."""
        self.path = Path(path)
        self._mistral = _system_messages_anywhere(mistral)
        raw = mistral.instruct_tokenizer.tokenizer
        if not isinstance(raw, (SentencePieceTokenizer, Tekkenizer)):
            raise TokenizerError(f"{self.path}: unsupported tokenizer type {type(raw).__name__}")
        self._raw: SentencePieceTokenizer | Tekkenizer = raw
        self.version = mistral.version.value
        self.vocab_size = raw.n_words
        self.bos_id = raw.bos_id
        self.eos_id = raw.eos_id
        self.stop_ids = frozenset({raw.eos_id})
        self.template = "mistral"
        # Tool calls ([AVAILABLE_TOOLS], [TOOL_CALLS], ...) arrived with the v3 formats.
        self.supports_tools = mistral.version >= TokenizerVersion.v3
        self._byte_run = self._run_bytes_function()

    @classmethod
    def from_file(cls, path: Path) -> MistralCommonTokenizer:
        """Load a tekken (`*tekken*.json`) or sentencepiece (`*.model`, `*.model.vN`) file.

        Any failure (missing, corrupt, unknown format) raises TokenizerError naming the file.
        """
        path = Path(path)
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise TokenizerError(f"tokenizer file {path} {what}")
        try:
            mistral = _load_mistral_tokenizer(path)
        except Exception as err:  # sentencepiece, tiktoken and json each fail in their own way
            detail = getattr(err, "message", None) or str(err) or type(err).__name__
            raise TokenizerError(f"cannot load tokenizer file {path}: {detail}") from err
        return cls(path, mistral)

    def __reduce__(self) -> tuple[Callable[[Path], MistralCommonTokenizer], tuple[Path]]:
        # MistralTokenizer pickles as "from_file(path)", which would lose a v3 vocabulary
        # recognised under a bare `tokenizer.model` name; reload through our own loader instead.
        return MistralCommonTokenizer.from_file, (self.path,)

    def __repr__(self) -> str:
        return (f"MistralCommonTokenizer(path={str(self.path)!r}, version={self.version!r}, "
                f"vocab_size={self.vocab_size})")

    # -- chat ------------------------------------------------------------------------------

    def encode_chat(self, messages: list[dict], tools: list[dict] | None = None, *,
                    continue_final: bool = False, add_generation_prompt: bool = True) -> list[int]:
        """The prompt tokens for an OpenAI-style conversation, as mistral-common encodes it.

        Messages: {"role": "system" | "developer" | "user" | "assistant" | "tool", "content": str,
        a list of {"type": "text", "text": ...} parts, or None (assistant with tool calls), plus
        the optional OpenAI fields "name", "tool_calls", "tool_call_id" and Mistral's "prefix".
        The conversation ends with a user or tool message (the model answers next), or with an
        assistant message to continue (continue_final, or "prefix": true on it): mistral-common
        then encodes it as a prefix, without the eos that would end the turn. Consecutive
        messages of one role are merged and system messages placed by mistral-common's
        normalizer (see _system_messages_anywhere). add_generation_prompt changes nothing here:
        `[/INST]` both ends the user's turn and opens the answer. Raises ChatTemplateError with a
        readable message for anything the template cannot express.
        """
        if not self.supports_tools:
            # mistral-common's v1/v2 formats drop a tools list without a word.
            if tools or any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
                            for m in (messages if isinstance(messages, list) else ())):
                raise ChatTemplateError(f"this model's chat format ({self.version} tokenizer) does "
                                        "not support tools or tool calls")
        prepared = _prepare_messages(messages)
        continuing = continue_final or final_prefix(messages)
        _check_ending(prepared, continuing)
        try:
            request = ChatCompletionRequest.from_openai(
                prepared, tools=tools or None, continue_final_message=continuing, model=_REQUEST_MODEL)
            tokenized = self._mistral.encode_chat_completion(request)
        except MistralCommonException as err:
            raise ChatTemplateError(f"invalid conversation: {err.message}") from err
        except ValidationError as err:
            raise ChatTemplateError(f"invalid conversation: {_describe_validation(err)}") from err
        except KeyError as err:
            raise ChatTemplateError(f"invalid conversation: missing field {err}") from err
        except (ValueError, TypeError, AssertionError) as err:
            # mistral-common states some of its request rules as plain exceptions or asserts
            # (e.g. "Assistant message must have content"); they are still the caller's mistake.
            raise ChatTemplateError(f"invalid conversation: {err}") from err
        return list(tokenized.tokens)

    # -- raw text --------------------------------------------------------------------------

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Raw text, no template (for /v1/completions)."""
        return self._raw.encode(text, bos=bos, eos=False)

    def decode(self, ids: Sequence[int]) -> str:
        """Text as mistral-common decodes it: control tokens dropped."""
        return self._mistral.decode(list(ids))

    def id_to_piece(self, i: int) -> str:
        return self._raw.id_to_piece(i)

    def is_control(self, i: int) -> bool:
        return self._raw.is_special(i)

    def control_token(self, name: str) -> int | None:
        """The id of a control token such as "[TOOL_CALLS]", or None if this vocabulary lacks it."""
        try:
            token_id = self._raw.get_special_token(name)
        except Exception:  # sentencepiece and tekken raise their own errors for an unknown name
            return None
        # sentencepiece answers an unknown name with the <unk> id.
        return token_id if self.is_control(token_id) and self.id_to_piece(token_id) == name else None

    # -- what the detokenizer needs to know about bytes -------------------------------------

    def _run_bytes_function(self) -> Callable[[int], bytes | None]:
        """For each token: the raw bytes it adds to the decoder's current byte run, or None when
        the token ends the run (the decoder turns the bytes gathered so far into text there)."""
        raw = self._raw
        if isinstance(raw, Tekkenizer):
            # tekken decodes each stretch of ordinary tokens as one byte string, and any of its
            # tokens may hold part of a character; special tokens split the stretches.
            def tekken_bytes(token_id: int) -> bytes | None:
                return None if raw.is_special(token_id) else raw.id_to_byte_piece(token_id)
            return tekken_bytes

        # sentencepiece pieces are whole characters; only the 256 byte-fallback pieces
        # (`<0xE4>`) carry partial characters, and any other piece ends a run of them.
        return byte_fallback_pieces(raw.vocab(), raw.is_special).get

    def _run_bytes(self, i: int) -> bytes | None:
        return self._byte_run(i)


def _prepare_messages(messages: Any) -> list[dict]:
    """Check what mistral-common accepts silently or reports obscurely; map "developer" to
    "system"; drop the "prefix" flags (encode_chat reads them first). Returns new dicts; the
    caller's are left alone."""
    if not isinstance(messages, list):
        raise ChatTemplateError("messages must be a list of message objects")
    if not messages:
        raise ChatTemplateError("the conversation must contain at least one message")

    prepared: list[dict] = []
    for index, message in enumerate(messages):
        where = f"message {index}"
        if not isinstance(message, dict):
            raise ChatTemplateError(f"{where} must be an object with a 'role'")
        role = message.get("role")
        if role not in _ROLES:
            raise ChatTemplateError(f"{where} has unknown role {role!r} (expected one of "
                                    f"{', '.join(_ROLES)})")
        _check_content(message.get("content"), role, f"{where} ({role})")
        if message.get("tool_calls") and role != "assistant":
            raise ChatTemplateError(f"{where} ({role}): only assistant messages carry tool_calls")
        if message.get("tool_call_id") is not None and role != "tool":
            raise ChatTemplateError(f"{where} ({role}): only tool messages carry a tool_call_id")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            # mistral-common would fail with a bare KeyError here.
            raise ChatTemplateError(f"{where} (tool): a tool message needs the 'tool_call_id' "
                                    "of the call it answers")
        prepared.append({**without_prefix_flags(message), "role": "system" if role == "developer" else role})

    # mistral-common checks the first role only for one-message conversations, and encodes e.g.
    # [assistant, user] with an empty first [INST] block: not a conversation the model has seen.
    first = prepared[0]["role"]
    if first not in ("system", "user"):
        raise ChatTemplateError(f"the conversation must start with a user or system message, "
                                f"not {first}")
    return prepared


def _check_ending(prepared: list[dict], continuing: bool) -> None:
    """The model writes the next assistant turn, so the conversation has to hand over to it, or
    end with the assistant message it continues. (Like mistral-common, a lone system message is
    let through.)"""
    if continuing:
        check_continuable(prepared)
        return
    last = prepared[-1]["role"]
    if len(prepared) > 1 and last not in ("user", "tool"):
        hint = (" (to continue it, set \"prefix\": true on it or continue_final_message)"
                if last == "assistant" else "")
        raise ChatTemplateError(f"the last message must be a user or tool message, not {last}{hint}")


def _check_content(content: Any, role: str, where: str) -> None:
    if isinstance(content, str):
        return
    if content is None:
        # An assistant turn may consist of tool calls only; mistral-common checks that pairing.
        if role != "assistant":
            raise ChatTemplateError(f"{where}: content must be a string or a list of text parts")
        return
    if not isinstance(content, list):
        raise ChatTemplateError(f"{where}: content must be a string or a list of text parts, "
                                f"not {type(content).__name__}")
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind is None:
            raise ChatTemplateError(f"{where}: every content part needs a 'type'")
        if kind != "text":
            raise ChatTemplateError(f"{where}: content parts of type {kind!r} are not supported; "
                                    "this model reads text parts only")
        if not isinstance(part.get("text"), str):
            raise ChatTemplateError(f"{where}: a text part needs a string 'text'")


def _describe_validation(err: ValidationError) -> str:
    # pydantic's own message spans many lines and links to its docs; one line per problem
    # ("content: Input should be a valid string") is what an API user can act on.
    problems = []
    for problem in err.errors():
        location = ".".join(str(part) for part in problem.get("loc", ()))
        problems.append(f"{location}: {problem['msg']}" if location else problem["msg"])
    return "; ".join(problems) or str(err)
