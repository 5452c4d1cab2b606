"""Monitoring: reference profiles, drift statistics, delayed-label performance, alerts, the
retraining trigger's rule and the HTML report. Pure functions; the I/O is in `jobs/monitor/main.py`."""
