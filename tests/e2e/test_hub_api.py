"""The hosted hub's API to the letter (its Models, Chat Completions and Async Queue references),
driven with httpx against the real server on the demo model: the model object's hub fields, the
search route and the list filters, the request schema's workbench keys (`basic`, `x-order`), the
hub's own error sentences on /api/ai/* (the OpenAI paths keep theirs), and the queue's refusal of a
text model.
"""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from support.error_shapes import KEY, hub_error, openai_error

MODEL = "open-mistral-7b"
USER = [{"role": "user", "content": "Hello"}]
# The keys of the hub model page's "Basic parameters" body, in its order, then "All parameters"' addition.
BASIC_KEYS = ["model", "messages", "temperature", "max_tokens", "stream"]
ALL_KEYS = [*BASIC_KEYS, "top_p"]


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def model(server, http) -> dict:
    r = http.get(server.url + f"/api/ai/models/{MODEL}")
    assert r.status_code == 200, r.text
    return r.json()


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and isinstance(body["data"], list)
    return [m["id"] for m in body["data"]]


# ---- the model object ---------------------------------------------------------------------------

def test_the_model_object_has_the_hubs_fields_in_the_hubs_shapes(model):
    assert model["model_type"] == "base"
    assert model["endpoint"] == "/chat/completions"
    assert model["pricing"] == {"method": "token", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                "cost_per_second": None, "cost_per_image": None, "cost_per_second_high_res": None,
                                "cost_per_second_with_audio": None}
    assert model["fine_tuning"] is None
    assert model["source_model"] is None  # the demo comes from no checkpoint of anyone's
    assert model["released_at"] is None or datetime.fromisoformat(model["released_at"])
    assert isinstance(model["image_url"], str) and model["image_url"].endswith(".svg")


def test_the_image_url_is_served(server, http, model):
    r = http.get(model["image_url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg")


def test_the_endpoint_is_relative_to_the_hubs_prefix(server, http, model):
    r = http.post(server.url + "/api/ai" + model["endpoint"], json={"model": MODEL, "messages": USER, "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"


# ---- search and filters -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["mistral", "MISTRAL", "7B mistral", "open-mistral", "demo", "random weights",
                                  "Mistral AI", ""])
def test_search_finds_the_model_by_id_name_description_or_developer(server, http, text):
    assert ids(http.get(server.url + "/api/ai/models/search", params={"search": text})) == [MODEL]


@pytest.mark.parametrize("text", ["kling", "flux", "mistral kling"])
def test_search_for_another_model_is_an_empty_list(server, http, text):
    assert ids(http.get(server.url + "/api/ai/models/search", params={"search": text})) == []


def test_search_gives_the_same_model_objects_as_the_list(server, http, model):
    found = http.get(server.url + "/api/ai/models/search", params={"search": "mistral"}).json()["data"]
    assert found == [model]


def test_search_without_its_query_is_a_400_not_a_model_lookup(server, http):
    err = hub_error(http.get(server.url + "/api/ai/models/search"), 400, "invalid_params")
    assert err["detail"] == "Missing required parameter: search"


@pytest.mark.parametrize("developer", ["mistralai", "Mistral AI", "mistral-ai", "MISTRAL_AI"])
def test_the_developer_filter_keeps_the_models_developer(server, http, developer):
    assert ids(http.get(server.url + "/api/ai/models", params={"developer_name": developer})) == [MODEL]
    assert ids(http.get(server.url + "/api/ai/models/search",
                        params={"search": "7b", "developer_name": developer})) == [MODEL]


@pytest.mark.parametrize("developer", ["openai", "anthropic", "mistral"])
def test_the_developer_filter_drops_other_developers(server, http, developer):
    assert ids(http.get(server.url + "/api/ai/models", params={"developer_name": developer})) == []
    assert ids(http.get(server.url + "/api/ai/models/search",
                        params={"search": "mistral", "developer_name": developer})) == []


@pytest.mark.parametrize("action", ["text_chat_messages", "text_generation", "image_editing"])
def test_the_action_filter_matches_fine_tuning_actions_and_this_model_has_none(server, http, model, action):
    """The hub's `action` is a fine-tuning action type; a model with fine_tuning null matches none."""
    assert model["fine_tuning"] is None
    assert ids(http.get(server.url + "/api/ai/models", params={"action": action})) == []
    assert ids(http.get(server.url + "/api/ai/models/search", params={"search": "", "action": action})) == []


def test_empty_filters_filter_nothing(server, http):
    assert ids(http.get(server.url + "/api/ai/models", params={"developer_name": "", "action": ""})) == [MODEL]


def test_search_and_the_queue_need_the_key_where_the_server_has_one(locked):
    for method, path in [("GET", "/api/ai/models/search?search=x"), ("POST", "/api/ai/queue")]:
        hub_error(httpx.request(method, locked.url + path), 401, "unauthenticated")
    r = httpx.get(locked.url + "/api/ai/models/search", params={"search": "mistral"},
                  headers={"Authorization": f"Bearer {KEY}"})
    assert ids(r) == [MODEL]


# ---- the request schema's workbench keys -------------------------------------------------------------

def test_the_schema_lists_the_basic_fields_of_the_hubs_page(model):
    schema = model["json_request_schema"]
    assert schema["basic"] == BASIC_KEYS
    assert set(schema["basic"]) <= set(schema["properties"])


def test_every_property_has_its_own_x_order_and_the_properties_come_in_it(model):
    props = model["json_request_schema"]["properties"]
    orders = [p["x-order"] for p in props.values()]
    assert all(isinstance(o, int) and not isinstance(o, bool) for o in orders)
    assert orders == list(range(len(props)))  # distinct, and written in that order
    ordered = sorted(props, key=lambda name: props[name]["x-order"])
    assert ordered[:len(ALL_KEYS)] == ALL_KEYS


# ---- the hub's own messages ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [{"messages": USER}, {"model": None, "messages": USER}, {"messages": []},
                                  {"model": "", "messages": USER}, {"model": "  ", "messages": USER}])
def test_a_body_without_a_model_gets_the_hubs_sentence(server, http, body):
    err = hub_error(http.post(server.url + "/api/ai/chat/completions", json=body), 400, "invalid_params")
    assert err["detail"] == "You must specify a model to call"


def test_the_openai_path_keeps_its_wording_for_a_missing_model(server, http):
    err = openai_error(http.post(server.url + "/v1/chat/completions", json={"messages": USER}), 400, param="model")
    assert err["message"] == "Missing required parameter: model"


def test_empty_messages_get_the_hubs_sentence(server, http):
    err = hub_error(http.post(server.url + "/api/ai/chat/completions", json={"model": MODEL, "messages": []}),
                    400, "invalid_params")
    assert err["detail"] == "Messages array cannot be empty"
    err = openai_error(http.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": []}),
                       400, param="messages")
    assert "at least 1 item" in err["message"]


def test_other_mistakes_keep_the_servers_wording_on_the_hub(server, http):
    err = hub_error(http.post(server.url + "/api/ai/chat/completions", json={"model": MODEL}), 400, "invalid_params")
    assert err["detail"] == "Missing required parameter: messages"
    err = hub_error(http.post(server.url + "/api/ai/chat/completions", json={"model": 5, "messages": USER}),
                    400, "invalid_params")
    assert err["detail"].startswith("Invalid value for model")


# ---- the queue ---------------------------------------------------------------------------------------------

def queue_error(response: httpx.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status", "status_message"} and body["status"] == "error"
    assert body["status_message"] == kind and body["error"]["type"] == kind
    assert set(body["error"]) == {"type", "title", "detail"}
    return body["error"]


@pytest.mark.parametrize("body", [{"model": MODEL, "prompt": "A red cube"},
                                  {"model": MODEL, "prompt": "A red cube", "num_generations": 4, "aspect_ratio": "1:1"}])
def test_the_queue_refuses_a_text_model_as_the_hub_does(server, http, body):
    err = queue_error(http.post(server.url + "/api/ai/queue", json=body), 415, "unsupported_media_type")
    assert err["title"] == "Unsupported Media Type"
    assert MODEL in err["detail"] and "/api/ai/chat/completions" in err["detail"]


def test_the_queue_does_not_know_other_models(server, http):
    err = queue_error(http.post(server.url + "/api/ai/queue", json={"model": "flux-2-dev", "prompt": "x"}),
                      404, "resource_not_found")
    assert err["detail"] == "Model not found: flux-2-dev"


@pytest.mark.parametrize("content,says", [
    (b"", "empty"), (b"{bad json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b'"text"', "JSON object"),
    (b'{"prompt": "x"}', "You must specify a model to call"), (b'{"model": ""}', "You must specify a model to call"),
    (b'{"model": 7}', "model"), (b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"model": "open-mistral-7b", "prompt": "\xff\xfe"}', "JSON"),
    (b'{"model": "open-mistral-7b", "num_generations": 5}', "num_generations must be an integer between 1 and 4"),
    (b'{"model": "open-mistral-7b", "num_generations": 0}', "num_generations must be an integer between 1 and 4"),
    (b'{"model": "open-mistral-7b", "num_generations": "2"}', "num_generations must be an integer between 1 and 4"),
    (b'{"model": "open-mistral-7b", "num_generations": true}', "num_generations must be an integer between 1 and 4"),
])
def test_a_queue_body_it_cannot_read_is_a_400(server, http, content, says):
    r = http.post(server.url + "/api/ai/queue", content=content, headers={"Content-Type": "application/json"})
    err = queue_error(r, 400, "invalid_params")
    assert says in err["detail"], err


def test_the_model_pages_parameter_table_follows_x_order_and_marks_the_basic_fields(server, http, model):
    page = http.get(server.url + f"/docs/models/{MODEL}")
    assert page.status_code == 200
    rows = re.findall(r'<tr id="param-([a-z_]+)">(.*?)</tr>', page.text, re.S)
    props = model["json_request_schema"]["properties"]
    assert [name for name, _ in rows] == sorted(props, key=lambda n: props[n]["x-order"])
    marked = [name for name, html in rows if "class=basic" in html]
    assert marked == ["temperature", "max_tokens", "stream"]  # model and messages say "required" instead


def test_the_openapi_document_lists_search_and_the_queue(server, http):
    paths = http.get(server.url + "/openapi.json").json()["paths"]
    assert "get" in paths["/api/ai/models/search"]
    assert {p["name"] for p in paths["/api/ai/models/search"]["get"]["parameters"]} == {
        "search", "developer_name", "action"}
    assert {p["name"] for p in paths["/api/ai/models"]["get"]["parameters"]} == {"developer_name", "action"}
    assert "post" in paths["/api/ai/queue"]
