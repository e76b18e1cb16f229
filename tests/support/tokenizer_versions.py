"""The tokenizer files bundled with mistral-common that the tokenizer tests (tests/unit/test_tokenizer_*.py)
run on: the sentencepiece versions and all of them, tekken included."""

SPM_VERSIONS = ["v1", "v3"]
ALL_VERSIONS = ["v1", "v3", "tekken_240718"]
