"""Hub ids resolve through huggingface_hub's own cache; offline misses get a clear message."""

import pytest
import torch
from huggingface_hub import constants

from mistral_serve.model import hub
from mistral_serve.model.errors import CheckpointError
from mistral_serve.model.loader import load_folder
from mistral_serve.model.writer import random_parameters, write_checkpoint
from mistral_serve.model.args import ModelArgs

ARGS = ModelArgs(dim=32, n_layers=1, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2, vocab_size=100)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_cache(cache, repo_id, layout):
    """Lay a checkpoint out the way huggingface_hub stores a downloaded snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    write_checkpoint(snapshot, ARGS, random_parameters(ARGS), layout=layout, dtype=torch.float32)
    return snapshot


@pytest.mark.parametrize("layout", ["hf", "mistral"])
def test_hub_id_resolves_from_the_cache(offline_cache, layout):
    snapshot = put_in_cache(offline_cache, "someone/tiny-mistral", layout)
    folder = hub.download("someone/tiny-mistral")
    assert folder.resolve() == snapshot.resolve()
    assert load_folder(folder).args == ARGS


def test_offline_miss_says_what_to_do(offline_cache):
    with pytest.raises(CheckpointError) as info:
        hub.download("mistralai/Mistral-7B-Instruct-v0.3")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "hf download" in message and "--model" in message


@pytest.mark.parametrize("ref, expected", [
    ("mistralai/Mistral-7B-Instruct-v0.3", True), ("owner/name@main", True),
    ("./local/folder", False), ("/abs/path", False), ("justaname", False), ("a/b/c", False),
])
def test_repo_id_recognition(ref, expected):
    assert hub.looks_like_repo_id(ref) is expected


def test_layout_choice_downloads_one_copy_of_the_weights():
    both = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "model.safetensors.index.json", "params.json", "consolidated.safetensors",
            "tokenizer.model", "tokenizer.model.v3"]
    assert hub._choose_patterns(both) == hub.MISTRAL_PATTERNS
    assert hub._choose_patterns(["config.json", "model.safetensors", "tokenizer.model"]) == hub.HF_PATTERNS
    with pytest.raises(CheckpointError, match="safetensors"):
        hub._choose_patterns(["config.json", "pytorch_model.bin"])
