import json
import os
import re

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


def test_saved_model_gets_the_usual_mode_and_keeps_an_existing_one(tmp_path):
    import stat

    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    old = os.umask(0o022)
    try:
        assert mode(_model().save(tmp_path / "a.owl")) == 0o644
        os.umask(0o077)
        assert mode(_model().save(tmp_path / "b.owl")) == 0o600
        # add-class and serve rewrite a model in place: it keeps the mode it had, not the umask's
        assert mode(_model().save(tmp_path / "a.owl")) == 0o644
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def fitted_file(tmp_path_factory):
    """A tiny model with a Gaussian classifier and a kNN detector, saved once for the tampering tests."""
    model = _model()
    g = torch.Generator().manual_seed(0)
    train = ImageDataset(torch.randint(0, 256, (40, 1, 10, 10), dtype=torch.uint8, generator=g),
                         torch.arange(40) % 4, model.class_names)
    model.fit_gaussian(train)
    model.fit_detector(train, train, "knn")
    return model.save(tmp_path_factory.mktemp("fitted") / "m.owl")


def _tampered(source, target, edit=lambda header: None, drop=()):
    """``source`` rewritten to ``target`` with its header edited in place and the tensors under ``drop`` left out."""
    contents = read_bundle(source)
    header = json.loads(json.dumps(contents.header))
    edit(header)
    tensors = {k: v.contiguous() for k, v in contents.tensors.items() if not k.startswith(drop)}
    save_file(tensors, str(target), metadata={"owlearn": json.dumps(header)})
    return target


@pytest.mark.parametrize("edit,drop,message", [
    (lambda h: h.update(format_version="1"), (), r"format_version is '1', not a positive whole number"),
    (lambda h: h.pop("class_names"), (), r"owlearn header is missing field 'class_names'"),
    (lambda h: h.update(class_names="wxyz"), (), r"has a string for field 'class_names', not an array"),
    (lambda h: h.update(class_names=[1, 2, 3, 4]), (), r"class name that is not a string"),
    (lambda h: h.update(class_names=["w", "x", "y"]), (), r"3 class names for a network with 4 outputs"),
    (lambda h: h.update(info=[]), (), r"has an array for field 'info', not an object"),
    (lambda h: h["info"].update(class_thresholds={"w": "abc"}), (),
     r"field 'info.class_thresholds', not an object of numbers by class name"),
    (lambda h: h.update(components=[]), (), r"has an array for field 'components', not an object"),
    (lambda h: h["network"]["backbone_args"].update(widths=[8, 8, 16, 32]), (),
     r"the network is damaged or inconsistent \(size mismatch for backbone.*; and \d+ more\)"),
    (lambda h: h["preprocessing"].pop("in_shape"), (), r"the preprocessing is damaged .*no entry 'in_shape'"),
    (lambda h: h["components"]["detector"].update({"class": "owlearn.nope:Thing"}), (),
     r"component 'detector' names an unknown class 'owlearn.nope:Thing'"),
    (lambda h: h["components"]["detector"].update({"class": "owlearn.__main__:main"}), (),
     r"component 'detector' names class 'owlearn.__main__:main', which is not part of owlearn"),
    (lambda h: h["components"].update(detector=[]), (), r"component 'detector' is an array, not an object"),
    (lambda h: h["components"]["gaussian"].pop("config"), (), r"component 'gaussian' has null for 'config'"),
    (lambda h: h["components"]["gaussian"]["config"].pop("fitted"), (), r"'gaussian' has no 'fitted' record"),
    (lambda h: h["components"]["gaussian"]["config"]["fitted"].pop("class_names_"), (),
     r"component 'gaussian' lacks its fitted class_names_"),
    (lambda h: h["components"]["gaussian"]["config"]["fitted"].update(class_names_=["w"]), (),
     r"component 'gaussian' has 1 class names for 4 classes"),
    (lambda h: h["components"]["detector"]["config"]["fitted"].pop("offset_"), (),
     r"component 'detector' lacks its fitted offset_"),
    (lambda h: None, ("components/gaussian/",), r"component 'gaussian' has none of its tensors"),
    (lambda h: None, ("components/gaussian/scatter_",),
     r"component 'gaussian' is damaged or inconsistent \(GaussianClassifier lacks the tensor\(s\) scatter_ its "
     r"config lists\)"),
])
def test_tampered_file_is_refused_with_what_is_wrong(fitted_file, tmp_path, edit, drop, message):
    path = _tampered(fitted_file, tmp_path / "bad.owl", edit, drop)
    with pytest.raises(ModelFileError, match=f"^{re.escape(str(path))}: .*{message}"):
        OwlModel.load(path)


def test_header_that_is_not_an_object_is_refused(tmp_path):
    path = _model().save(tmp_path / "m.owl")
    tensors = {k: v.contiguous() for k, v in read_bundle(path).tensors.items()}
    save_file(tensors, str(path), metadata={"owlearn": json.dumps([read_bundle(path).header])})
    with pytest.raises(ModelFileError, match="owlearn header is an array, not a JSON object"):
        OwlModel.load(path)


def test_untampered_fitted_file_loads(fitted_file):
    model = OwlModel.load(fitted_file)
    assert model.classes == ["w", "x", "y", "z"] and model.detector is not None


def test_a_file_from_before_the_tensor_list_still_loads(fitted_file, tmp_path):
    def without_lists(header):
        for entry in header["components"].values():
            entry["config"].pop("tensors")

    model = OwlModel.load(_tampered(fitted_file, tmp_path / "old.owl", without_lists))
    assert model.classes == ["w", "x", "y", "z"] and model.detector is not None


def _net_and_sgd(width):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.rand(4, 3)).sum().backward()
    opt.step()
    return net, opt


def test_checkpoint_of_another_network_is_refused_in_one_line(tmp_path):
    from owlearn.train import checkpoint as ckpt

    net, sgd = _net_and_sgd(4)
    path = tmp_path / "last.ckpt"
    ckpt.save(path, model=net, optimizer=sgd, meta={"epoch": 1})
    other, other_sgd = _net_and_sgd(5)  # 0.weight, 0.bias and 2.weight differ in shape
    with pytest.raises(ValueError, match=r"checkpoint .*last.ckpt was written for a different network "
                                         r"\(size mismatch for 0.weight: .*; and 2 more\); use the same "
                                         r"options or a new --checkpoint-dir") as info:
        ckpt.load(path, model=other, optimizer=other_sgd)
    assert "\n" not in str(info.value)


def test_checkpoint_of_another_optimizer_is_refused(tmp_path):
    from owlearn.train import checkpoint as ckpt

    net, sgd = _net_and_sgd(4)
    path = tmp_path / "last.ckpt"
    ckpt.save(path, model=net, optimizer=sgd, meta={"epoch": 1})
    with pytest.raises(ValueError, match=r"written for a different optimizer than Adam"):
        ckpt.load(path, model=net, optimizer=torch.optim.Adam(net.parameters()))


def test_checkpoint_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    import stat

    from owlearn.train import checkpoint as ckpt

    net, sgd = _net_and_sgd(4)
    path = tmp_path / "last.ckpt"
    ckpt.save(path, model=net, optimizer=sgd)
    path.chmod(0o640)
    ckpt.save(path, model=net, optimizer=sgd)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
