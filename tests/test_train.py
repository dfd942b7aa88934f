import pytest
import torch

from _interrupt import Interrupt, StopAfter
from owlearn.data import ImageDataset
from owlearn.data.augment import preset
from owlearn.nets import Network, NetworkSpec
from owlearn.train import CrossEntropy, Hook, TrainConfig, Trainer, TrainingDiverged, evaluate_accuracy
from owlearn.train.loop import HOOK_NAMES, lr_factor, masked_cross_entropy


def _blobs(n=192, seed=0):
    """Three classes told apart by which image quadrant is bright: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 1, 12, 12), dtype=torch.uint8, generator=g)
    for k in range(3):
        images[labels == k, :, (k // 2) * 6:(k // 2) * 6 + 6, (k % 2) * 6:(k % 2) * 6 + 6] += 150
    return ImageDataset(images, labels, ["a", "b", "c"], name="blobs")


def _net(seed=0):
    torch.manual_seed(seed)
    return Network(NetworkSpec("convnet", "l2softmax", 3, (1, 12, 12), backbone_args={"widths": (8, 16, 16, 32)}))


def _config(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.05, "seed": 3, **kw})


def test_training_learns_a_separable_task():
    data = _blobs()
    net = _net()
    # lr 0.02, not _config's 0.05: at 0.05 the batch-norm statistics swing from epoch to epoch, and whether
    # the last epoch lands above 0.9 depended on the host's float rounding (0.94 and 0.81 under bf16 on an
    # AVX-512 host for seed 3); at 0.02 seeds 0-4 reach 1.0 in float32 and bf16 alike
    history = Trainer(net, _config(epochs=4, lr=0.02), progress=False).fit(data, data)
    assert history.last["val_acc"] > 0.9
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert {"epoch", "loss", "acc", "lr", "seconds", "images_per_s", "val_acc"} <= set(history.last)


def test_same_seed_same_weights():
    data = _blobs()
    a, b = _net(), _net()
    Trainer(a, _config(), augment=preset("digits"), progress=False).fit(data)
    Trainer(b, _config(), augment=preset("digits"), progress=False).fit(data)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))




def test_compiled_steps_train_the_same_network_as_eager_steps(tmp_path):
    # aot_eager traces the steps as inductor does (dynamo graph, ahead-of-time autograd) without
    # generating C++: the plumbing is what is tested here, in seconds
    from owlearn.train.vat import VAT

    data = _blobs(96)
    eager, compiled = _net(), _net()
    objectives = lambda: [CrossEntropy(), VAT(eps=1.0)]  # noqa: E731  VAT calls the network as a whole
    Trainer(eager, _config(epochs=1), objectives=objectives(), progress=False).fit(data)
    trainer = Trainer(compiled, _config(epochs=1, compile="aot_eager"), objectives=objectives(),
                      checkpoint_dir=tmp_path, progress=False)
    from torch._dynamo.utils import counters

    counters.clear()
    trainer.fit(data)
    assert counters["stats"]["unique_graphs"] >= 1  # the steps did run through a compiled graph
    assert trainer.step_model is not compiled and trainer.model is compiled
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # no "_orig_mod." prefixes
    for (name, p), q in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-4), name
    assert (tmp_path / "last.ckpt").exists()


def test_bf16_precision_trains_under_autocast_and_keeps_float32_parameters():
    seen = []

    class RecordingCrossEntropy(CrossEntropy):
        def __call__(self, step):
            seen.append(step.logits.dtype)
            return super().__call__(step)

    data = _blobs()
    net = _net()
    trainer = Trainer(net, _config(epochs=4, lr=0.02, precision="bf16"), objectives=[RecordingCrossEntropy()],
                      progress=False)
    assert trainer.autocast_bf16
    history = trainer.fit(data, data)
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert history.last["val_acc"] > 0.9  # evaluation in float32
    assert not Trainer(_net(), _config(), progress=False).autocast_bf16  # auto: float32 on a CPU
    with pytest.raises(ValueError, match="precision"):
        Trainer(_net(), _config(precision="fp16"), progress=False)


def test_resume_equals_uninterrupted_run(tmp_path):
    data = _blobs()
    full = _net()
    full_hist = Trainer(full, _config(), augment=preset("digits"), checkpoint_dir=tmp_path / "a",
                        progress=False).fit(data)

    first = _net()
    with pytest.raises(Interrupt):
        Trainer(first, _config(), augment=preset("digits"), checkpoint_dir=tmp_path / "b",
                hooks=[StopAfter(0)], progress=False).fit(data)
    resumed = _net(seed=99)  # different initial weights: everything must come from the checkpoint
    hist = Trainer(resumed, _config(), augment=preset("digits"), checkpoint_dir=tmp_path / "b",
                   progress=False).fit(data, resume=True)

    assert [e["loss"] for e in hist.epochs] == [e["loss"] for e in full_hist.epochs]
    for (name, p), q in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_resume_with_other_settings_is_refused(tmp_path):
    data = _blobs()
    Trainer(_net(), _config(epochs=1), checkpoint_dir=tmp_path, progress=False).fit(data)
    with pytest.raises(ValueError, match="resume with the same settings"):
        Trainer(_net(), _config(epochs=2, seed=4), checkpoint_dir=tmp_path, progress=False).fit(data, resume=True)
    # an optimizer whose state has the same layout (Adam's would drive an AdamW), or another rate: named
    Trainer(_net(), _config(epochs=1, optimizer="adam"), checkpoint_dir=tmp_path / "adam", progress=False).fit(data)
    with pytest.raises(ValueError, match=r"written with optimizer='adam', lr=0.05; resume with the same settings"):
        Trainer(_net(), _config(epochs=1, optimizer="adamw", lr=0.001), checkpoint_dir=tmp_path / "adam",
                progress=False).fit(data, resume=True)
    # an optimizer whose state does not fit (SGD's momentum for Adam) is named too, not reported as a mismatch
    with pytest.raises(ValueError, match=r"written with optimizer='sgd'; resume with the same settings"):
        Trainer(_net(), _config(epochs=1, optimizer="adam"), checkpoint_dir=tmp_path, progress=False).fit(
            data, resume=True)


def test_a_checkpoint_with_a_damaged_header_is_refused(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from owlearn.train import checkpoint as ckpt

    Trainer(_net(), _config(epochs=1), checkpoint_dir=tmp_path, progress=False).fit(_blobs())
    path = tmp_path / "last.ckpt"
    with safe_open(str(path), framework="pt") as f:
        header, tensors = json.loads(f.metadata()["owlearn"]), {k: f.get_tensor(k) for k in f.keys()}
    for edit in ({"version": "1"}, {"optimizer": []}, {"meta": None}):
        save_file(tensors, str(path), metadata={"owlearn": json.dumps({**header, **edit})})
        with pytest.raises(ValueError, match="damaged owlearn checkpoint"):
            ckpt.load(path, model=_net())


def test_resume_without_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        Trainer(_net(), _config(), checkpoint_dir=tmp_path, progress=False).fit(_blobs(), resume=True)


class _ExplodeInEpoch:
    name = "explode"

    def __init__(self, epoch):
        self.epoch = epoch

    def __call__(self, step):
        return step.logits.sum() * (float("nan") if step.epoch == self.epoch else 0.0)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    data = _blobs()
    net = _net()
    trainer = Trainer(net, _config(), objectives=[CrossEntropy(), _ExplodeInEpoch(1)], checkpoint_dir=tmp_path,
                      progress=False)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 1.*last.ckpt"):
        trainer.fit(data)
    # the checkpoint of epoch 1 is intact and loads into a fresh network
    again = _net(seed=5)
    hist = Trainer(again, _config(epochs=3), checkpoint_dir=tmp_path, progress=False)
    assert hist._resume() == 1


def test_on_accelerators_a_nan_loss_is_caught_at_the_next_check_without_waiting_for_every_step(monkeypatch):
    # GPUs read the NaN flag back every few steps; the CPU path checks each one (above)
    monkeypatch.setattr(Trainer, "_nonfinite_check_steps", lambda self: 4)
    trainer = Trainer(_net(), _config(), objectives=[CrossEntropy(), _ExplodeInEpoch(1)], progress=False)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at epoch 2, by step 4;"):
        trainer.fit(_blobs())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_masked_cross_entropy_is_the_mean_over_the_labelled_rows(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (12,), generator=g)
    y[[1, 4, 7]] = -1
    keep = y >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep], y[keep], label_smoothing=smoothing)
    assert torch.allclose(masked_cross_entropy(logits, y, smoothing), expected, atol=1e-6)
    unlabelled = masked_cross_entropy(logits, torch.full((12,), -1), smoothing)
    unlabelled.backward()
    assert unlabelled.item() == 0.0 and not logits.grad.any()


def test_every_hook_fires_in_order():
    calls = []

    class Recorder(Hook):
        def __getattribute__(self, name):
            if name in HOOK_NAMES:
                return lambda *a: calls.append(name)
            return object.__getattribute__(self, name)

    Trainer(_net(), _config(epochs=2), hooks=[Recorder()], progress=False).fit(_blobs(64))
    assert set(calls) == set(HOOK_NAMES)
    assert calls[0] == "on_fit_start" and calls[-1] == "on_fit_end"
    assert calls.count("on_epoch_start") == 2 and calls.count("on_after_backward") == 4


def test_unlabeled_images_are_ignored_by_cross_entropy():
    data = _blobs()
    labels = data.labels.clone()
    labels[::2] = -1
    half = ImageDataset(data.images, labels, data.class_names)
    net = _net()
    Trainer(net, _config(epochs=4), progress=False).fit(half)
    assert evaluate_accuracy(net, data) > 0.9


def test_onecycle_warms_up_then_decays():
    cfg = TrainConfig(schedule="onecycle", warmup=0.2)
    values = [lr_factor(cfg, s, 100) for s in range(101)]
    assert values[0] < 0.1 and max(values) == pytest.approx(1.0, abs=1e-6)
    assert values.index(max(values)) == 20 and values[-1] == pytest.approx(0.0, abs=1e-9)
