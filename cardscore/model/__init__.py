"""Training, evaluation and model-card library code (pure: frames in, numbers and files out).

Modules: `metrics` (AUC, AP, card precision@k), `protocol` (train/delay/test windows and the
handbook split), `datasets` (entity frames, feature joins, the model matrix), `training`
(fitting, scoring, prequential search), `evaluation` (metrics of a model and the gate's
decision), `plots` (PNG pictures), `card` (the markdown model card), `baselines` (the
handbook's scikit-learn baselines, for the quality benchmark).
"""
