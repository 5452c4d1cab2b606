"""The retraining trigger: decision + train stage (stage.py; entry main.py)."""
