"""The fresh_features stage (see stage.py; entry main.py)."""
