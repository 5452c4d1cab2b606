"""Feature engineering and the Feast feature store shared by the batch and stream scorers.

See features/README.md for the definitions; `features.definitions.MODEL_FEATURES` is the model's
ordered input and `FEATURE_SERVICE_NAME` its Feast FeatureService.
"""
