import pathlib
import sys

# Tests import the package from src/ even when it is not installed in editable mode.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))
