"""Tokenizer wrapper: which tokenizer file a folder's is, loading one (its properties, a bare
tokenizer.model recognised by its vocabulary), and the errors of missing or garbage files.

Uses only the tokenizer files bundled with mistral-common; no network.
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import pytest

from mistral_serve.tokenizer import Tokenizer, TokenizerError, bundled_tokenizer_file, find_tokenizer_file


# --- finding and loading files -------------------------------------------------------------


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_find_tokenizer_file_preference(tmp_path: Path) -> None:
    assert find_tokenizer_file(tmp_path) is None
    assert find_tokenizer_file(tmp_path / "missing") is None

    _touch(tmp_path, "tokenizer.model", "config.json", "consolidated.safetensors")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model"

    _touch(tmp_path, "tokenizer.model.v3")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model.v3"

    _touch(tmp_path, "mistral_instruct_tokenizer_241114.model.v7", "tokenizer.model.v7m1")
    assert find_tokenizer_file(tmp_path) == tmp_path / "mistral_instruct_tokenizer_241114.model.v7"

    # Versions compare as numbers: v11 beats v7 although "v11" < "v7" as text.
    _touch(tmp_path, "tokenizer.model.v11")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tokenizer.model.v11"

    _touch(tmp_path, "tekken.json")
    assert find_tokenizer_file(tmp_path) == tmp_path / "tekken.json"


def test_find_tokenizer_file_ignores_folders(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model.v3").mkdir()
    assert find_tokenizer_file(tmp_path) is None


def test_bundled_tokenizer_file() -> None:
    assert bundled_tokenizer_file("v1").name == "tokenizer.model.v1"
    assert bundled_tokenizer_file("v3").name == "mistral_instruct_tokenizer_240323.model.v3"
    assert bundled_tokenizer_file("v3").is_file()
    with pytest.raises(ValueError, match="v99"):
        bundled_tokenizer_file("v99")


def test_tokenizer_properties(tokenizers: dict[str, Tokenizer]) -> None:
    v1, v3, tekken = tokenizers["v1"], tokenizers["v3"], tokenizers["tekken_240718"]
    assert (v1.version, v1.vocab_size, v1.bos_id, v1.eos_id, v1.supports_tools) == ("v1", 32000, 1, 2, False)
    assert (v3.version, v3.vocab_size, v3.bos_id, v3.eos_id, v3.supports_tools) == ("v3", 32768, 1, 2, True)
    assert (tekken.version, tekken.vocab_size, tekken.supports_tools) == ("v3", 131072, True)
    assert v3.path == bundled_tokenizer_file("v3")
    assert v3.is_control(v3.bos_id) and v3.id_to_piece(v3.bos_id) == "<s>"
    assert not v3.is_control(v3.encode("hi", bos=False)[0])


def test_from_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "tokenizer.model.v3"
    with pytest.raises(TokenizerError, match=re.escape(str(missing))):
        Tokenizer.from_file(missing)


@pytest.mark.parametrize("name", ["tokenizer.model", "tokenizer.model.v3", "tekken.json", "vocab.txt"])
def test_from_file_garbage(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00this is not a tokenizer{")
    with pytest.raises(TokenizerError, match=re.escape(str(path))):
        Tokenizer.from_file(path)


def test_bare_tokenizer_model_with_v3_vocabulary_loads_as_v3(
        tmp_path: Path, tokenizers: dict[str, Tokenizer]) -> None:
    bare = tmp_path / "tokenizer.model"
    shutil.copyfile(bundled_tokenizer_file("v3"), bare)
    tok = Tokenizer.from_file(bare)
    assert tok.version == "v3" and tok.supports_tools
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = tok.encode_chat(conversation)
    assert prompt == tokenizers["v3"].encode_chat(conversation)
    assert prompt[1] == 3 and tok.is_control(3)  # the [INST] control token, not "[INST]" as text
    # Pickling (e.g. to worker processes) keeps the recognised version.
    assert pickle.loads(pickle.dumps(tok)).version == "v3"


def test_bare_tokenizer_model_with_v1_vocabulary_stays_v1(tmp_path: Path) -> None:
    bare = tmp_path / "tokenizer.model"
    shutil.copyfile(bundled_tokenizer_file("v1"), bare)
    assert Tokenizer.from_file(bare).version == "v1"
