"""The browser workbench and the model documentation pages.

`static/` holds the workbench (plain HTML, CSS and JavaScript modules: no build step, no external
resources) and the files the model page uses; `model_page` renders the model page on the server
from the model object.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
