"""The hub's model object built from a card, for the checkpoints the live tests cannot load (the
demo is all they serve): where source_model and released_at come from, the workbench keys of the
request schema, and the hub's list filters and search as pure functions."""

from __future__ import annotations

import dataclasses

import pytest

from mistral_serve.catalog import card_for
from mistral_serve.model.args import PRESETS
from mistral_serve.server.models import REQUEST_FIELDS, filter_models, model_object, search_models
from mistral_serve.server.protocol import ChatCompletionRequest

MISTRAL_7B = PRESETS["mistral-7b-v0.3"]
# Any shape but Mistral 7B's: a checkpoint without a card of its own.
SMALL = dataclasses.replace(MISTRAL_7B, n_layers=2, dim=256, hidden_dim=512, n_heads=4, n_kv_heads=2, head_dim=64)


@pytest.mark.parametrize("source,expected", [
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"),
    ("mistralai/Mistral-7B-Instruct-v0.3@main", "mistralai/Mistral-7B-Instruct-v0.3@main"),
    ("/srv/models/my-finetune/", "my-finetune"),
    ("/srv/models/mistral.Q4_0.gguf", "mistral.Q4_0.gguf"),
    ("ollama:mistral:7b", "ollama:mistral:7b"),
])
def test_source_model_is_the_hub_id_or_the_checkpoints_name_never_its_path(source, expected):
    card = card_for(SMALL, source)
    assert card.source_model == expected
    assert model_object(card, 0)["source_model"] == expected


def test_a_local_folder_that_looks_like_a_hub_id_is_named_by_its_last_part(tmp_path, monkeypatch):
    (tmp_path / "team" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert card_for(SMALL, "team/model").source_model == "model"


def test_the_demo_has_no_source_model_nor_release():
    card = card_for(SMALL, "demo", demo=True)
    assert card.source_model is None and card.released_at is None


def test_mistral_7b_carries_its_release_date():
    obj = model_object(card_for(MISTRAL_7B, "mistralai/Mistral-7B-Instruct-v0.3"), 0)
    assert obj["id"] == "open-mistral-7b" and obj["released_at"] == "2023-09-27T00:00:00Z"
    assert card_for(SMALL, "/srv/models/other").released_at is None


def test_the_field_table_names_only_real_request_fields():
    """A renamed or removed field in protocol.py must be renamed here too, or it drops silently."""
    fields = set(ChatCompletionRequest.model_fields)
    names = [name for name, _ in REQUEST_FIELDS]
    assert len(names) == len(set(names))
    assert [n for n in names if n not in fields] == []


def test_a_field_missing_from_the_table_still_gets_an_order_after_the_others(monkeypatch):
    import mistral_serve.server.models as models

    monkeypatch.setattr(models, "REQUEST_FIELDS", (("messages", True), ("model", False)))
    props = model_object(card_for(SMALL, "x"), 0)["json_request_schema"]["properties"]
    order = list(props)
    assert order[:2] == ["messages", "model"]
    assert [props[n]["x-order"] for n in order] == list(range(len(order)))
    rest = [n for n in ChatCompletionRequest.model_json_schema()["properties"] if n not in ("messages", "model")]
    assert order[2:] == rest


def objects() -> list[dict]:
    return [model_object(card_for(MISTRAL_7B, "mistralai/Mistral-7B-Instruct-v0.3"), 0),
            {**model_object(card_for(SMALL, "/m/tiny", metadata=None), 0), "id": "tiny",
             "developer": {"name": "Someone Else", "logo": None}, "owned_by": "someone",
             "fine_tuning": {"actions": ["text_chat_messages"], "cost_per_second": 0.001}}]


def test_filters_pick_by_developer_and_fine_tuning_action():
    models = objects()
    assert [m["id"] for m in filter_models(models, developer_name="mistral-ai")] == ["open-mistral-7b"]
    assert [m["id"] for m in filter_models(models, developer_name="someone")] == ["tiny"]
    assert [m["id"] for m in filter_models(models, action="text_chat_messages")] == ["tiny"]
    assert filter_models(models, developer_name="Mistral AI", action="text_chat_messages") == []
    assert filter_models(models) == models


def test_search_wants_every_word_somewhere():
    models = objects()
    assert [m["id"] for m in search_models(models, "mistral 7b")] == ["open-mistral-7b"]
    assert [m["id"] for m in search_models(models, "ELSE")] == ["tiny"]
    assert [m["id"] for m in search_models(models, "mistral")] == ["open-mistral-7b", "tiny"]  # its description
    assert [m["id"] for m in search_models(models, "tiny kling")] == []
    assert search_models(models, "  ") == models
