"""The materialize stage (see stage.py; entry main.py)."""
