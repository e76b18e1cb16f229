"""Fixtures shared by unit test files: the bundled mistral-common tokenizers of test_tokenizer_*.py,
and every build of our CPU kernels (test_cpu_kernels.py, test_paged_attention.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mistral_serve.model.kernels import VARIANTS, cpu_kernels, unavailable_reason
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


@pytest.fixture(scope="module", params=list(VARIANTS))
def kernels(request):
    """The compiled module of one build of our CPU kernels (compiled on first use, then cached by
    torch); skipped where the CPU cannot run that build, failed where it can and the build failed."""
    module = cpu_kernels(request.param)
    if module is None:
        reason = unavailable_reason(request.param)
        if reason is None:
            pytest.fail(f"the {request.param} build failed (see the log)")
        pytest.skip(f"the {request.param} build: {reason}")
    return module
