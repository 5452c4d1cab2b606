"""Training, evaluation and model-card library code: frames in, numbers out.

Modules: `metrics` (AUC, AP, card precision@k), `protocol` (train/delay/test windows and the
handbook split), `datasets` (entity frames, feature joins, the model matrix), `training`
(fitting, prequential search), `scoring` (the one `predict` every path uses), `evaluation`
(metrics of a model and the gate's decision), `card` (the markdown model card), `baselines`
(the handbook's scikit-learn baselines, for the quality benchmark). Its I/O edge: `plots`
writes PNG pictures, `tracking` logs runs to MLflow.
"""
