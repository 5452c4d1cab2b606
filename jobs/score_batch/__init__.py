"""The score_batch stage (see stage.py; entry main.py)."""
