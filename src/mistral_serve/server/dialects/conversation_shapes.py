"""How a chat request's prompt ends: the request fields for continuing the last message.

Three fields say it, each from the API that has it:
  messages[-1].prefix     Mistral's API: an assistant message the answer starts with. Its answer
                          content is the prefix followed by the continuation, as Mistral returns it
                          (Mistral's own guide strips `content[len(prefix):]` for the rest).
  continue_final_message  vLLM: continue the last (assistant) message; the answer content is the
                          continuation only, as vLLM returns it.
  add_generation_prompt   vLLM and transformers: whether the prompt opens the assistant's turn.
                          Sent as true together with continue_final_message, it is vLLM's 400.
The tokenizer turns the outcome into a prompt (Tokenizer.encode_chat); its ChatTemplateError
says what a conversation cannot be (a prefix that is not last, nothing to continue, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...tokenizer.conversation import message_text
from ..errors import bad_request
from ..protocol import ChatCompletionRequest


@dataclass(frozen=True)
class PromptEnding:
    continue_final: bool = False  # the prompt ends inside the last (assistant) message
    add_generation_prompt: bool = True
    echo: str = ""  # text the answer's content starts with (the prefix, as Mistral's API returns it)


def prompt_ending(body: ChatCompletionRequest) -> PromptEnding:
    """The request's PromptEnding; 400 for vLLM's forbidden pair of flags."""
    # vLLM checks the fields as sent: add_generation_prompt defaults to true, so only an explicit
    # true conflicts.
    if body.continue_final_message and body.add_generation_prompt and "add_generation_prompt" in body.model_fields_set:
        raise bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
                          param="continue_final_message", code="invalid_parameter")
    last = body.messages[-1] if body.messages else None
    prefix = last is not None and last.role == "assistant" and last.prefix
    content = last.model_dump()["content"] if prefix else None
    return PromptEnding(continue_final=body.continue_final_message or prefix,
                        add_generation_prompt=body.add_generation_prompt,
                        echo=message_text(content) if prefix else "")
