"""Discovering classes: refused images are grouped, groups are named, named groups become classes."""

import copy

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from owlearn.cli import app
from owlearn.discover import discover, name_groups, purity


def test_refused_unknown_patterns_fall_into_pure_groups(model_on_three):
    model, data = model_on_three
    found = discover(model, data.images, k=2)
    labels = data.labels.numpy()
    unknown_refused = np.isin(labels[found.rejected], [3, 4]).mean()
    assert unknown_refused >= 0.8  # what is refused is mostly the unknown patterns
    assert purity(found, labels)["purity"] >= 0.9


def test_k_is_chosen_by_silhouette_when_not_given(model_on_three):
    model, data = model_on_three
    found = discover(model, data.images, max_k=4)
    assert set(found.silhouettes) == {2, 3, 4} and found.k == max(found.silhouettes, key=found.silhouettes.get)


def test_named_groups_become_classes_the_model_recognises(model_on_three):
    model, data = model_on_three
    model = copy.deepcopy(model)
    found = discover(model, data.images, k=2)
    labels = data.labels.numpy()
    majority = {g["group"]: g["majority"] for g in purity(found, labels)["groups"]}
    added = name_groups(model, data.images, found, {g: f"p{m}" for g, m in majority.items()})
    assert set(added) == {"p3", "p4"}
    pred = model.predict(data.images[data.labels >= 3])
    truth = [f"p{v}" for v in data.labels[data.labels >= 3].tolist()]
    assert np.mean([a == b for a, b in zip(pred.names, truth)]) >= 0.8


def test_discover_needs_a_detector(model_on_three):
    model, data = model_on_three
    bare = copy.deepcopy(model)
    bare.components.pop("detector")
    with pytest.raises(ValueError, match="detector"):
        discover(bare, data.images)


def test_discover_command_writes_sheets_and_adds_named_groups(model_on_three, tmp_path):
    model, data = model_on_three
    path = tmp_path / "m.owl"
    model.save(path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(len(data)):
        Image.fromarray(data.images[i, 0].numpy()).save(folder / f"{i:03d}.png")
    runner = CliRunner()
    first = runner.invoke(app, ["discover", str(path), str(folder), "--groups", "2", "--out", str(tmp_path / "d")])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "d" / "group-00.png").exists() and (tmp_path / "d" / "groups.json").exists()
    second = runner.invoke(app, ["discover", str(path), str(folder), "--groups", "2", "--out", str(tmp_path / "d"),
                                 "--name", "0=new-a", "--name", "1=new-b"])
    assert second.exit_code == 0, second.output
    assert "now knows 5" in " ".join(second.output.split())
    from owlearn.model import OwlModel

    assert {"new-a", "new-b"} <= set(OwlModel.load(path).classes)
    bad = runner.invoke(app, ["discover", str(path), str(folder), "--name", "oops"])
    assert bad.exit_code != 0 and "GROUP=NAME" in bad.output
