"""Training: one loop, pluggable objectives and hooks, checkpoints."""

from owlearn.train.loop import (
    CrossEntropy,
    History,
    Hook,
    Objective,
    Step,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    evaluate_accuracy,
    extract_features,
    predict_logits,
    resolve_device,
)

__all__ = [
    "CrossEntropy", "History", "Hook", "Objective", "Step", "TrainConfig", "Trainer", "TrainingDiverged",
    "evaluate_accuracy", "extract_features", "predict_logits", "resolve_device",
]
