"""GET /tokenizer_info: the tokenizer's configuration, as vLLM serves it (the fields of a
tokenizer_config.json plus `tokenizer_class`), for clients that tokenize through the server.

lm-evaluation-harness's `tokenizer_backend=remote` is one: it reads `bos_token` / `eos_token`
here, then finds their ids by sending those strings to /tokenize with add_special_tokens false,
and takes the first id. Mistral's tokenizer (mistral-common) never reads a control token out of
text ("<s>" is three ordinary tokens), so /tokenize answers a prompt that is exactly one control
token's spelling with that token (`control_token_prompt`), as a Hugging Face tokenizer does:
"<s>" -> [1], "</s>" -> [2]. Text that merely contains the spelling is encoded as text, as
/v1/completions encodes it, so no prompt can smuggle a control token in.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ...tokenizer import Tokenizer
from ..auth import require_key
from .deps import serving

router = APIRouter(tags=["system"])


def control_token_prompt(tokenizer: Tokenizer, text: str, add_special_tokens: bool) -> list[int] | None:
    """The ids of a raw prompt that is exactly one control token's spelling (what the text's
    start gets first, BOS with add_special_tokens, then that token); None for any other text."""
    token_id = tokenizer.control_token(text) if text else None
    if token_id is None:
        return None
    return tokenizer.encode("", bos=add_special_tokens) + [token_id]


def tokenizer_config(tokenizer: Tokenizer, max_model_len: int) -> dict:
    """tokenizer_config.json's fields for this tokenizer. add_bos_token: whether a raw prompt
    starts with BOS (Mistral: yes; many checkpoint tokenizers: no)."""
    piece = tokenizer.id_to_piece
    bos = None if tokenizer.bos_id is None else piece(tokenizer.bos_id)
    unk = tokenizer.control_token("<unk>")
    return {
        "tokenizer_class": type(tokenizer).__name__,
        "bos_token": bos,
        "eos_token": piece(tokenizer.eos_id),
        "unk_token": None if unk is None else piece(unk),
        "pad_token": None,
        "add_bos_token": bos is not None and tokenizer.encode("a", bos=True)[:1] == [tokenizer.bos_id],
        "add_eos_token": False,
        "model_max_length": max_model_len,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer_version": tokenizer.version,
    }


@router.get("/tokenizer_info", summary="The tokenizer's configuration (as vLLM's /tokenizer_info)",
            dependencies=[Depends(require_key)])
async def tokenizer_info(request: Request) -> dict:
    s = serving(request)
    loaded, engine = s.require_ready()
    return tokenizer_config(loaded.tokenizer, engine.max_model_len)
