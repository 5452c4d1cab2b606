"""The engine smoke test (stage.py; entry main.py)."""
