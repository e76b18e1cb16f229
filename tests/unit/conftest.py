"""Fixtures shared by unit test files: the bundled mistral-common tokenizers of test_tokenizer_*.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from support.tokenizer_versions import ALL_VERSIONS

if TYPE_CHECKING:
    from mistral_serve.tokenizer import Tokenizer


# Session scope: loaded once for the three files, as once for the one module they were split from
# (they only read from them; the window test's monkeypatch of `decode` is undone after it).
@pytest.fixture(scope="session")
def tokenizers() -> dict[str, Tokenizer]:
    """Our wrapper on each bundled tokenizer file."""
    from mistral_serve.tokenizer import Tokenizer, bundled_tokenizer_file

    return {name: Tokenizer.from_file(bundled_tokenizer_file(name)) for name in ALL_VERSIONS}
