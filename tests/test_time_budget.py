"""Training for a time budget: stops in time, with the learning rate annealed to the end of the budget."""

import itertools

import pytest
import torch

from owlearn.data import ImageDataset
from owlearn.nets import Network, NetworkSpec
from owlearn.train.loop import TrainConfig, Trainer


def _data() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.randint(0, 255, (128, 1, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(128) % 2, ["a", "b"])


def _net() -> Network:
    torch.manual_seed(0)
    return Network(NetworkSpec("convnet", "linear", 2, (1, 8, 8), backbone_args={"widths": [4, 8]}))


def _fit(config: TrainConfig, seconds_per_tick: float) -> Trainer:
    trainer = Trainer(_net(), config, progress=False)
    ticks = itertools.count()
    trainer.clock = lambda: next(ticks) * seconds_per_tick  # a clock that advances on every reading
    trainer.fit(_data())
    return trainer


def test_budget_stops_training_and_anneals_the_rate_to_its_end():
    # 4 steps per epoch, 10 epochs = 40 steps; the fake clock makes the budget run out long before
    trainer = _fit(TrainConfig(epochs=10, batch_size=32, lr=0.1, time_budget_s=30.0), seconds_per_tick=1.0)
    epochs = trainer.history.epochs
    assert trainer.budget_spent and len(epochs) < 10
    assert epochs[-1].get("steps", 4) < 4 or len(epochs) * 4 < 40
    assert epochs[-1]["lr"] < 0.1 * 0.05  # the cosine had reached its end when the time did
    assert sum(e["seconds"] for e in epochs) <= 30.0 + 3.0  # at most the step in flight runs over


def test_a_budget_that_is_never_reached_changes_nothing():
    plain = _fit(TrainConfig(epochs=3, batch_size=32, lr=0.1), seconds_per_tick=0.0)
    roomy = _fit(TrainConfig(epochs=3, batch_size=32, lr=0.1, time_budget_s=1e6), seconds_per_tick=0.0)
    assert not roomy.budget_spent
    for a, b in zip(plain.model.state_dict().values(), roomy.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="time_budget_s"):
        _fit(TrainConfig(epochs=1, batch_size=32, time_budget_s=0.0), seconds_per_tick=0.0)
