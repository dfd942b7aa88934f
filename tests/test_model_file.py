import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from owlearn.bundle import MODEL_FORMAT_VERSION, ModelFileError, read_bundle, write_bundle
from owlearn.data import ImageDataset
from owlearn.model import OwlModel
from owlearn.nets import Network, NetworkSpec
from owlearn.preprocess import Preprocessing


class Centroids:
    """A minimal component: what the model file needs from a fitted feature-space estimator."""

    def __init__(self, means):
        self.means_ = means

    def state_dict(self):
        return {"means_": self.means_}

    def config(self):
        return {"kind": "centroids"}

    @classmethod
    def from_state(cls, state, config):
        return cls(state["means_"])


def _model(head="l2softmax"):
    torch.manual_seed(0)
    spec = NetworkSpec("convnet", head, 4, (1, 10, 10), mean=(0.2,), std=(0.3,),
                       backbone_args={"widths": (8, 8, 16, 16)})
    net = Network(spec)
    # make BatchNorm statistics non-trivial, so that the round trip has something to get wrong
    net.train()
    net(torch.rand(32, 1, 10, 10))
    net.eval()
    return OwlModel(net, ["w", "x", "y", "z"], Preprocessing((1, 10, 10), background="dark"),
                    info={"dataset": "synthetic", "note": "ünïcode ok"})


@pytest.mark.parametrize("head", ["linear", "l2softmax", "cosine"])
def test_round_trip_gives_identical_predictions(tmp_path, head):
    model = _model(head)
    images = torch.randint(0, 256, (20, 1, 10, 10), dtype=torch.uint8)
    before = model.predict(images)
    path = model.save(tmp_path / "m.owl")
    loaded = OwlModel.load(path)
    after = loaded.predict(images)
    assert np.array_equal(before.probabilities, after.probabilities)
    assert loaded.class_names == model.class_names and loaded.info == model.info
    assert loaded.preprocessing == model.preprocessing
    assert loaded.network.spec == model.network.spec


def test_channels_last_weights_are_saved_contiguously(tmp_path):
    model = _model()
    model.network.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (5, 1, 10, 10), dtype=torch.uint8)
    loaded = OwlModel.load(model.save(tmp_path / "m.owl"))
    assert np.array_equal(model.predict(images).probabilities, loaded.predict(images).probabilities)


def test_components_travel_with_the_model(tmp_path, monkeypatch):
    import owlearn.model as owl_model

    monkeypatch.setattr(owl_model, "_component_class", lambda path: Centroids)
    model = _model()
    model.components["centroids"] = Centroids(torch.arange(6.0).view(2, 3))
    loaded = OwlModel.load(model.save(tmp_path / "m.owl"))
    assert torch.equal(loaded.components["centroids"].means_, torch.arange(6.0).view(2, 3))


def test_component_outside_owlearn_is_refused(tmp_path):
    model = _model()
    path = model.save(tmp_path / "m.owl")
    contents = read_bundle(path)
    contents.header["components"] = {"evil": {"class": "os:system", "config": {}}}
    header = {k: v for k, v in contents.header.items() if k not in ("format", "format_version", "owlearn_version")}
    write_bundle(path, header, {"network": contents.group("network")})
    with pytest.raises(ModelFileError, match="not part of owlearn"):
        OwlModel.load(path)


def test_file_is_plain_safetensors_with_a_json_header(tmp_path):
    from safetensors import safe_open

    path = _model().save(tmp_path / "m.owl")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["owlearn"])
        assert any(k.startswith("network/") for k in f.keys())
    assert header["format"] == "owlearn-model" and header["format_version"] == MODEL_FORMAT_VERSION
    assert header["class_names"] == ["w", "x", "y", "z"]


def test_newer_format_is_refused_with_advice(tmp_path):
    path = _model().save(tmp_path / "m.owl")
    contents = read_bundle(path)
    header = dict(contents.header, format_version=MODEL_FORMAT_VERSION + 1)
    save_file({k: v.contiguous() for k, v in contents.tensors.items()}, str(path),
              metadata={"owlearn": json.dumps(header)})
    with pytest.raises(ModelFileError, match="newer than this owlearn.*upgrade"):
        OwlModel.load(path)


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable owlearn model"),
    (b"\x00" * 100, "not a readable owlearn model"),
    (b"PK\x03\x04 a zip file", "not a readable owlearn model"),
])
def test_garbage_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.owl"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        OwlModel.load(path)


def test_safetensors_without_owlearn_header_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFileError, match="no 'owlearn' header"):
        OwlModel.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        OwlModel.load(tmp_path / "nope.owl")
    with pytest.raises(ModelFileError, match="is a directory"):
        OwlModel.load(tmp_path)


def test_truncated_file_is_refused(tmp_path):
    path = _model().save(tmp_path / "m.owl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        OwlModel.load(path)


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    import owlearn.bundle as bundle

    path = _model().save(tmp_path / "m.owl")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bundle, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        _model("linear").save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.owl"]


def test_predict_checks_the_input_shape():
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\).*takes \(1, 10, 10\)"):
        _model().predict(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_predict_accepts_datasets_and_files(tmp_path):
    from PIL import Image

    model = _model()
    ds = ImageDataset(torch.randint(0, 256, (3, 1, 10, 10), dtype=torch.uint8), torch.zeros(3), model.class_names)
    assert model.predict(ds).labels.shape == (3,)
    Image.fromarray(np.full((40, 30), 255, np.uint8)).save(tmp_path / "white.png")
    pred = model.predict([tmp_path / "white.png"])
    assert len(pred.names) == 1 and pred.names[0] in model.class_names


@pytest.mark.parametrize("detector", ["knn", "lof", "mahalanobis", "vim", "msp", "energy", "layers"])
def test_detector_round_trip_keeps_scores_identical(tmp_path, detector):
    model = _model("linear" if detector == "vim" else "l2softmax")
    g = torch.Generator().manual_seed(0)
    train = ImageDataset(torch.randint(0, 256, (120, 1, 10, 10), dtype=torch.uint8, generator=g),
                         torch.arange(120) % 4, model.class_names)
    calib = ImageDataset(torch.randint(0, 256, (40, 1, 10, 10), dtype=torch.uint8, generator=g),
                         torch.arange(40) % 4, model.class_names)
    model.fit_detector(train, calib, detector, accept_rate=0.9)
    images = torch.randint(0, 256, (25, 1, 10, 10), dtype=torch.uint8, generator=g)
    before = model.predict(images)
    loaded = OwlModel.load(model.save(tmp_path / "m.owl"))
    after = loaded.predict(images)
    assert np.array_equal(before.scores, after.scores)
    assert np.array_equal(before.accepted, after.accepted) and before.names == after.names
    assert loaded.detector.offset_ == model.detector.offset_
    # calibration: at least 90% of the calibration images are accepted
    assert model.predict(calib).accepted.mean() >= 0.9
