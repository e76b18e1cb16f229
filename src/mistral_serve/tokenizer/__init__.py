"""Tokenizers: one interface (`Tokenizer`), two implementations, one way to pick between them.

- `MistralCommonTokenizer`: Mistral's own tokenizer files (`tokenizer.model.v3`, `tekken.json`)
  and `[INST]` chat formats through mistral-common.
- `CheckpointTokenizer`: a checkpoint's own vocabulary (`tokenizer.json`, a GGUF file's
  `tokenizer.ggml.*` fields, a sentencepiece `tokenizer.model`) and its Jinja chat template, as
  Zephyr-, OpenHermes- or ChatML-style fine-tunes (SmolLM2, Qwen) ship them.
- `load_tokenizer(folder, gguf_path=..., chat_template="auto", model_vocab_size=...)`: the one
  entry point the loader calls; it decides which of the two a checkpoint gets.

`Tokenizer.from_file(path)` still loads a mistral-common file, as it always has.
"""

from .base import ChatTemplateError, Tokenizer, TokenizerError
from .checkpoint import CheckpointTokenizer
from .choose import CHAT_TEMPLATE_MODES, load_tokenizer
from .detokenizer import IncrementalDetokenizer, has_unfinished_character
from .mistral import MistralCommonTokenizer, bundled_tokenizer_file, find_tokenizer_file
from .template import ChatTemplate

__all__ = [
    "CHAT_TEMPLATE_MODES",
    "ChatTemplate",
    "ChatTemplateError",
    "CheckpointTokenizer",
    "IncrementalDetokenizer",
    "MistralCommonTokenizer",
    "Tokenizer",
    "TokenizerError",
    "bundled_tokenizer_file",
    "find_tokenizer_file",
    "has_unfinished_character",
    "load_tokenizer",
]
