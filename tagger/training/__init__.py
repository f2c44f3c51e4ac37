"""Training: everything that makes a model directory.

``train`` is the training loop and its policy (early stopping, checkpoints, resume);
``distributed`` its data-parallel form under torchrun; ``distill`` learns from teachers;
``tune`` searches hyperparameters (Optuna, Ray Tune); ``recipes`` holds the built-in settings
and picks one for a corpus; ``metrics`` scores (seqeval, token accuracy); ``card`` and
``plots`` write a model's README and PNGs.
"""
