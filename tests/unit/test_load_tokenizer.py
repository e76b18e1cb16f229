"""load_tokenizer picks the right tokenizer: mistral-common for Mistral's own checkpoints, the
checkpoint's own tokenizer and template for fine-tunes that bring one, and says why it cannot
where --chat-template asks for something the checkpoint does not have."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mistral_serve.tokenizer import (
    CheckpointTokenizer,
    MistralCommonTokenizer,
    TokenizerError,
    bundled_tokenizer_file,
    load_tokenizer,
)
from mistral_serve.tokenizer.gguf_vocab import UNUSED, sentencepiece_fields

ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
          "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n' "
          "+ message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n"
          "{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
INST = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
        "message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there 😀"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "  Crème brûlée?"}]


@pytest.fixture(scope="module")
def zephyr_source(tmp_path_factory) -> Path:
    """A Zephyr-style fine-tune's tokenizer files, written by transformers: tokenizer.json for
    Mistral's v3 vocabulary (converted from the bundled sentencepiece file), the template."""
    transformers = pytest.importorskip("transformers")
    from sentencepiece import SentencePieceProcessor
    from tokenizers import AddedToken
    from transformers.tokenization_utils_base import generate_merges

    sp = SentencePieceProcessor(model_file=str(bundled_tokenizer_file("v3")))
    pieces = [sp.IdToPiece(i) for i in range(sp.vocab_size())]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges = generate_merges(vocab, {piece: sp.GetScore(i) for i, piece in enumerate(pieces)})
    tok = transformers.LlamaTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": [
        AddedToken(p, special=True, normalized=False)
        for i, p in enumerate(pieces) if sp.IsControl(i) and i > 2]})
    tok.chat_template = ZEPHYR
    folder = tmp_path_factory.mktemp("zephyr")
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture
def zephyr(zephyr_source: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "zephyr"
    shutil.copytree(zephyr_source, folder)
    return folder


def mistral_folder(tmp_path: Path, version: str = "v3") -> Path:
    folder = tmp_path / f"mistral-{version}"
    folder.mkdir()
    shutil.copy(bundled_tokenizer_file(version), folder / f"tokenizer.model.{version}")
    return folder


def test_a_mistral_folder_gets_mistral_common(tmp_path: Path) -> None:
    folder = mistral_folder(tmp_path)
    tok = load_tokenizer(folder, model_vocab_size=32768)
    assert isinstance(tok, MistralCommonTokenizer) and tok.path == folder / "tokenizer.model.v3"
    assert (tok.version, tok.template, tok.stop_ids, tok.supports_tools) == ("v3", "mistral", {2}, True)


def test_a_zephyr_fine_tune_gets_its_own_template(zephyr: Path) -> None:
    from transformers import AutoTokenizer

    tok = load_tokenizer(zephyr, model_vocab_size=32768)
    assert isinstance(tok, CheckpointTokenizer) and tok.path == zephyr / "tokenizer.json"
    assert tok.version == "tokenizer.json (Zephyr template)" and tok.stop_ids == {2}
    reference = AutoTokenizer.from_pretrained(str(zephyr))
    expected = reference.apply_chat_template(CONVERSATION, add_generation_prompt=True)
    assert tok.encode_chat(CONVERSATION) == (expected if isinstance(expected, list) else expected["input_ids"])


def test_an_inst_template_with_a_mistral_file_gets_mistral_common(zephyr: Path) -> None:
    shutil.copy(bundled_tokenizer_file("v3"), zephyr / "tokenizer.model")
    (zephyr / "chat_template.jinja").write_text(INST)
    tok = load_tokenizer(zephyr, model_vocab_size=32768)
    assert isinstance(tok, MistralCommonTokenizer) and tok.path == zephyr / "tokenizer.model"


def test_mistral_vocabulary_in_tokenizer_json_without_template_gets_the_bundled_file(zephyr: Path) -> None:
    (zephyr / "chat_template.jinja").unlink()
    tok = load_tokenizer(zephyr, model_vocab_size=32768)
    assert isinstance(tok, MistralCommonTokenizer) and tok.path == bundled_tokenizer_file("v3")
    forced = load_tokenizer(zephyr, chat_template="mistral", model_vocab_size=32768)
    assert isinstance(forced, MistralCommonTokenizer)
    with pytest.raises(TokenizerError, match="no chat template of its own"):
        load_tokenizer(zephyr, chat_template="checkpoint", model_vocab_size=32768)


def test_tokenizer_config_forms_and_generation_config_stop_ids(zephyr: Path) -> None:
    (zephyr / "chat_template.jinja").unlink()
    config = json.loads((zephyr / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "{{ raise_exception('no') }}"},
                               {"name": "default", "template": "<|im_start|>{{ messages[0].content }}"}]
    config["eos_token"] = {"content": "</s>", "lstrip": False}
    (zephyr / "tokenizer_config.json").write_text(json.dumps(config))
    (zephyr / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 4]}))
    tok = load_tokenizer(zephyr, model_vocab_size=32768)
    assert tok.version == "tokenizer.json (ChatML template)" and tok.stop_ids == {2, 4}
    assert tok.decode(tok.encode_chat([{"role": "user", "content": "Hi"}])) == "<|im_start|>Hi"


def test_a_template_file_goes_with_the_checkpoints_own_vocabulary(tmp_path: Path) -> None:
    folder = mistral_folder(tmp_path)
    template = tmp_path / "chatml.jinja"
    template.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                        "{% endfor %}")
    tok = load_tokenizer(folder, chat_template=str(template), model_vocab_size=32768)
    assert isinstance(tok, CheckpointTokenizer) and tok.template == "checkpoint"
    assert tok.version == "sentencepiece tokenizer.model.v3 (template chatml.jinja)"
    mistral = load_tokenizer(folder, model_vocab_size=32768)
    assert tok.encode("Hello world", bos=True) == mistral.encode("Hello world", bos=True)
    with pytest.raises(TokenizerError, match="no chat template of its own"):
        load_tokenizer(folder, chat_template="checkpoint", model_vocab_size=32768)


def test_bad_template_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    folder = mistral_folder(tmp_path)
    missing = tmp_path / "missing.jinja"
    with pytest.raises(TokenizerError, match=re.escape(f"chat template file {missing} does not exist")):
        load_tokenizer(folder, chat_template=str(missing), model_vocab_size=32768)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% if messages %}unclosed")
    with pytest.raises(TokenizerError, match=re.escape(str(broken)) + ": the chat template does not compile"):
        load_tokenizer(folder, chat_template=str(broken), model_vocab_size=32768)


def test_a_broken_folder_config_is_an_error_naming_the_file(zephyr: Path) -> None:
    (zephyr / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=re.escape(str(zephyr / "tokenizer_config.json"))):
        load_tokenizer(zephyr, model_vocab_size=32768)


def test_a_mistral_tokenizer_larger_than_the_model_is_an_error(tmp_path: Path) -> None:
    folder = mistral_folder(tmp_path)
    with pytest.raises(TokenizerError, match=r"tokenizer.model.v3: the tokenizer has 32768 tokens .* only 32000"):
        load_tokenizer(folder, model_vocab_size=32000)
    # A Mistral folder's own file must match its weights exactly (a v1 file with v3 weights is
    # the wrong file); only a vocabulary that is itself padded may be smaller (below).
    with pytest.raises(TokenizerError, match=r"tokenizer.model.v1: the tokenizer has 32000 tokens .* has 32768"):
        load_tokenizer(mistral_folder(tmp_path, "v1"), model_vocab_size=32768)


def gguf_meta(version: str, template: str | None, pad_to: int | None = None) -> dict:
    """The GGUF fields of a sentencepiece-vocabulary file, without writing one."""
    meta = sentencepiece_fields(bundled_tokenizer_file(version))
    if pad_to:
        extra = pad_to - len(meta["tokenizer.ggml.tokens"])
        meta["tokenizer.ggml.tokens"] += [f"[PAD{i}]" for i in range(extra)]
        meta["tokenizer.ggml.scores"] += [-1e4] * extra
        meta["tokenizer.ggml.token_type"] += [UNUSED] * extra
    return meta if template is None else {**meta, "tokenizer.chat_template": template}


@pytest.mark.parametrize("template, chosen", [(None, MistralCommonTokenizer), (INST, MistralCommonTokenizer),
                                              (ZEPHYR, CheckpointTokenizer)])
def test_gguf_with_mistral_vocabulary_follows_its_template(template, chosen) -> None:
    tok = load_tokenizer(None, gguf_path=Path("model.gguf"), gguf_meta=gguf_meta("v3", template),
                         model_vocab_size=32768)
    assert isinstance(tok, chosen)


def test_gguf_with_padded_v1_vocabulary_gets_the_v1_file() -> None:
    tok = load_tokenizer(None, gguf_path=Path("model.gguf"), gguf_meta=gguf_meta("v1", None, pad_to=32768),
                         model_vocab_size=32768)
    assert isinstance(tok, MistralCommonTokenizer) and (tok.version, tok.vocab_size) == ("v1", 32000)


def test_mistral_is_refused_for_another_vocabulary() -> None:
    meta = gguf_meta("v3", ZEPHYR)
    meta["tokenizer.ggml.tokens"] = [*meta["tokenizer.ggml.tokens"][:-1], "<something else>"]
    with pytest.raises(TokenizerError, match="model.gguf: --chat-template mistral needs Mistral's own tokenizer"):
        load_tokenizer(None, gguf_path=Path("model.gguf"), gguf_meta=meta, chat_template="mistral",
                       model_vocab_size=32768)
    assert isinstance(load_tokenizer(None, gguf_path=Path("model.gguf"), gguf_meta=meta, model_vocab_size=32768),
                      CheckpointTokenizer)
