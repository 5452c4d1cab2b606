"""The monitor stage (see stage.py; entry main.py)."""
