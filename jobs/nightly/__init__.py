"""The nightly pipeline: the composition of the stages (pipeline.py; entry main.py)."""
