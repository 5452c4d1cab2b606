"""The ingest stage: landing -> bronze -> silver (+ quarantine), behind gates."""
