"""One APIRouter per area; app.py includes them all."""
