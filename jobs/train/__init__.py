"""The train stage (see stage.py; entry main.py)."""
