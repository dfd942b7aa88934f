"""A model that refuses the unknown and learns new classes without retraining."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from owlearn.cli import app
from owlearn.model import UNKNOWN, OwlModel
from owlearn.space import GaussianClassifier


def test_unknown_classes_are_refused(model_on_three, patterns):
    model, data = model_on_three
    test = patterns(seed=1)
    pred = model.predict(test.select_classes([3, 4]))
    assert (pred.labels == -1).mean() > 0.8 and set(pred.names) <= {UNKNOWN, "p0", "p1", "p2"}
    known = model.predict(test.select_classes([0, 1, 2]))
    assert known.accepted.mean() > 0.85


def test_add_class_learns_without_retraining_and_survives_a_round_trip(model_on_three, patterns, tmp_path):
    model, data = model_on_three
    model = OwlModel.load(model.save(tmp_path / "m.owl"))  # a private copy
    weights = {k: v.clone() for k, v in model.network.state_dict().items()}
    for k in (3, 4):
        model.add_class(f"p{k}", data.subset(data.labels == k))
    assert model.classes == ["p0", "p1", "p2", "p3", "p4"]
    assert all(torch.equal(weights[k], v) for k, v in model.network.state_dict().items())  # no gradient step
    test = patterns(seed=1)
    pred = model.predict(test)
    assert (pred.nearest == test.labels.numpy()).mean() > 0.9
    assert pred.accepted[test.labels.numpy() >= 3].mean() > 0.8  # the detector learned them too
    loaded = OwlModel.load(model.save(tmp_path / "grown.owl"))
    again = loaded.predict(test)
    assert loaded.classes == model.classes and np.array_equal(again.probabilities, pred.probabilities)


def test_add_class_needs_the_gaussian_and_two_images(model_on_three, tmp_path):
    model, data = model_on_three
    bare = OwlModel.load(model.save(tmp_path / "m.owl"))
    del bare.components["gaussian"]
    with pytest.raises(ValueError, match="fit_gaussian"):
        bare.add_class("p3", data.subset(data.labels == 3))
    with pytest.raises(ValueError, match="at least 2"):
        model.add_class("lonely", data.images[:1])
    for name, said in [("", "blank"), ("  ", "blank"), ("Unknown", "answer for refused images"),
                       ("p0", "already knows")]:  # blank, spelled like the refusal, or taken
        with pytest.raises(ValueError, match=said):
            model.add_class(name, data.subset(data.labels == 3))


def test_cli_add_class(model_on_three, tmp_path):
    from PIL import Image

    model, data = model_on_three
    path = model.save(tmp_path / "m.owl")
    folder = tmp_path / "p4"
    folder.mkdir()
    for i, img in enumerate(data.subset(data.labels == 4).images[:20]):
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    runner = CliRunner()
    result = runner.invoke(app, ["add-class", str(path), str(folder), "--name", "p4"])
    assert result.exit_code == 0, result.output
    assert OwlModel.load(path).classes == ["p0", "p1", "p2", "p4"]
    again = runner.invoke(app, ["add-class", str(path), str(folder), "--name", "p4"])
    assert again.exit_code != 0 and "already knows" in again.output


def test_gaussian_on_layers_and_embedding_reads_both_and_grows_like_a_refit(model_on_three, tmp_path):
    model, data = model_on_three
    model = OwlModel.load(model.save(tmp_path / "m.owl"))
    first = data.subset(data.labels < 3)
    model.fit_gaussian(first, features="layers+embedding")
    layers = model._inputs(first, gaussian_features="layers")[3]
    emb = model._inputs(first, gaussian_features="embedding")[3]
    assert model.gaussian.n_features_in_ == layers.shape[1] + emb.shape[1]
    model.add_class("p3", data.subset(data.labels == 3))
    four = data.subset(data.labels <= 3)
    refit = GaussianClassifier().fit(model._inputs(four)[3], four.labels.numpy())
    assert np.allclose(refit.means_, model.gaussian.means_, atol=1e-6)
    assert np.array_equal(refit.predict(model._inputs(data)[3]), model.predict(data).nearest)


def test_cli_train_refuses_an_unknown_gaussian_view_before_training(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", "digits", "--gaussian", "--gaussian-features", "pixels",
                                      "--out", str(tmp_path / "m.owl")])
    assert result.exit_code != 0 and "layers+embedding" in result.output
    assert not (tmp_path / "m.owl").exists()
