"""The gateway's routes, one APIRouter per resource (app.py includes them)."""
