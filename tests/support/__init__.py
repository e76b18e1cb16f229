"""Helpers shared by the test folders: a live server process (server_process), the tests' real
model (real_model), tiny engines and the reference decode loop (engine_helpers,
reference_decode), GGUF files (gguf_files), the reliability suite's traffic and figures, and the
helpers of the browser tests (workbench), the error tests (error_shapes), the `openai` client
tests (openai_helpers) and the tokenizer tests (tokenizer_versions).

Imported as `from support.NAME import ...`: tests/ is on sys.path through its conftest.py."""
