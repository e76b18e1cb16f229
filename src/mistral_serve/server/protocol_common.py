"""What the request models of every dialect share: an explicit null that means the default, and
refusals that say why.

OpenAI's API reads `"temperature": null` as "the default", and its SDK sends the nulls of an
earlier answer back (`message.model_dump()`), so a null for an optional field is its default
here too; the published schema says so (the field's type gains a null branch). Typing stays
strict otherwise: "3" is still not 3.

Two refusals carry their own error type, which errors.validation_error renders as a 400 with
that code: `unsupported_parameter` (a documented parameter this server cannot honour, e.g.
`audio`) and `unsupported_content` (a part the model cannot read, e.g. an image). A name that no
API documents stays pydantic's `extra_forbidden` ("Unrecognized request argument supplied").
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Callable, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler, ValidationInfo,
                      WithJsonSchema, field_validator, model_validator)
from pydantic_core import CoreSchema, PydanticCustomError

UNSUPPORTED_PARAMETER = "unsupported_parameter"
UNSUPPORTED_CONTENT = "unsupported_content"
TEXT_ONLY = "this model takes text only"

# Schema keys that describe a property rather than constrain its value: they stay outside the
# null branch when a property is made nullable.
_META = {"title", "description", "default", "examples", "deprecated"}


def _accepts_none(tp: Any) -> bool:
    if tp is None or tp is type(None) or tp is Any:
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _accepts_none(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return any(_accepts_none(arg) for arg in get_args(tp))
    if origin is Literal:
        return None in get_args(tp)
    return False


def _nullable(prop: dict) -> dict:
    """`prop` with a null branch: {"type": "number", "maximum": 2, "default": 1} ->
    {"anyOf": [{"type": "number", "maximum": 2}, {"type": "null"}], "default": 1}."""
    if "anyOf" in prop:
        if {"type": "null"} not in prop["anyOf"]:
            prop["anyOf"].append({"type": "null"})
        return prop
    inner = {k: v for k, v in prop.items() if k not in _META and not k.startswith("x-")}
    return {"anyOf": [inner, {"type": "null"}], **{k: v for k, v in prop.items() if k not in inner}}


class RequestModel(BaseModel):
    """A request body (or a part of one) where an explicit null for an optional field is that
    field's default, and a field declared with `unsupported(why)` refuses any other value."""

    # The body keys (aliases and names) of the optional fields whose type has no null.
    _null_is_default: ClassVar[frozenset[str]] = frozenset()
    # field name -> why it is not supported
    _unsupported: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keys, refused = set(), {}
        for name, info in cls.model_fields.items():
            if not info.is_required() and not _accepts_none(info.annotation):
                keys.update({name, info.alias or name})
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if "x-unsupported" in extra:
                refused[name] = str(extra["x-unsupported"])
        cls._null_is_default, cls._unsupported = frozenset(keys), refused

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v is None and k in cls._null_is_default for k, v in data.items()):
            return {k: v for k, v in data.items() if not (v is None and k in cls._null_is_default)}
        return data

    # After the type, as pydantic allows no "before" validator on a union's discriminator field:
    # an Unsupported field takes any value, so that this is the one refusal of a value it gets.
    @field_validator("*")
    @classmethod
    def _refuse_unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        why = cls._unsupported.get(info.field_name or "")
        return value if why is None else refusal(value, _never, why, info.field_name or "")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        schema = handler(core_schema)
        if handler.mode == "validation":
            props = handler.resolve_ref_schema(schema).get("properties", {})
            for key in cls._null_is_default & props.keys():
                props[key] = _nullable(props[key])
        return schema


class StrictModel(RequestModel):
    # strict: no silent conversions ("3" is not 3, true is not 1), as the published schema says;
    # a name the API does not know is refused.
    model_config = ConfigDict(extra="forbid", strict=True)


def refusal(value: Any, accepted: Callable[[Any], bool], why: str, name: str) -> Any:
    """`value`, unless it is neither null nor `accepted`: then `unsupported_parameter`, saying why."""
    if value is not None and not accepted(value):
        raise PydanticCustomError(UNSUPPORTED_PARAMETER, "{name} is not supported: {why}", {"name": name, "why": why})
    return value


def _never(_value: Any) -> bool:
    return False


def refused_unless(accepted: Callable[[Any], bool], why: str, name: str | None = None) -> BeforeValidator:
    """For a parameter of which only some values can be honoured (`modalities: ["text"]`): any
    other non-null value is refused as `name` (the field's name by default), saying why; checked
    before the type."""
    def check(value: Any, info: ValidationInfo) -> Any:
        return refusal(value, accepted, why, name or info.field_name or "this parameter")

    return BeforeValidator(check)


def no_effect(why: str, **constraints: Any) -> Any:
    """A documented parameter accepted without effect: in the schema, saying so (and marked
    `x-no-effect`, for tools that list what a request can change); never passed on."""
    return Field(default=None, exclude=True, description=f"Accepted; changes nothing here: {why}.",
                 json_schema_extra={"x-no-effect": True}, **constraints)


# The type of a parameter declared with `unsupported(why)`: null, as the schema says.
Unsupported = Annotated[Any, WithJsonSchema({"type": "null"})]


def unsupported(why: str) -> Any:
    """A documented parameter this server cannot honour (an `Unsupported` field): absent or null
    only, any other value is refused with `why`, which the schema gives as `x-unsupported`."""
    return Field(default=None, exclude=True, description=f"Not supported: {why}. Absent or null only.",
                 json_schema_extra={"x-unsupported": why})


def text_only_part(kinds: dict[str, str]) -> Callable[[Any], Any]:
    """A validator for one content part: a part of a type in `kinds` ({type: the key holding its
    text}) becomes a text part; any other type (an image, audio, a file) is refused as
    `unsupported_content`: the model takes text only."""
    def check(value: Any) -> Any:
        if not isinstance(value, dict) or "type" not in value:
            return value  # the text part's own validation names what is missing
        kind = value["type"]
        if kind == "text":
            return value
        key = kinds.get(kind) if isinstance(kind, str) else None
        if key is None:
            raise PydanticCustomError(UNSUPPORTED_CONTENT, "{kind} content parts are not supported: {why}",
                                      {"kind": str(kind)[:64], "why": f"{TEXT_ONLY} (send text parts)"})
        if set(value) != {"type", key} or not isinstance(value[key], str):
            raise PydanticCustomError("invalid_part", "a {kind} part is {shape}",
                                      {"kind": kind, "shape": f'{{"type": "{kind}", "{key}": TEXT}}'})
        return {"type": "text", "text": value[key]}

    return check
