"""`owlearn data` commands, run through typer's test runner."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from owlearn.data.cli import app
from owlearn.data.sources import RemoteFile, get_dataset_spec, register_dataset

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("command", [[], ["list"], ["download"], ["info"]])
def test_help(command):
    result = _run(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_list(isolated_env):
    result = _run("list")
    assert result.exit_code == 0, result.output
    for name in ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "usps", "digits"):
        assert name in result.output
    assert "1x28x28" in result.output and "built in" in result.output
    assert str(isolated_env) in result.output


def test_info(isolated_env):
    result = _run("info", "usps")
    assert result.exit_code == 0, result.output
    assert "usps.t.bz2" in result.output and "md5 8ea070ee2aca1ac3" in result.output
    assert "train 7,291" in result.output and "missing" in result.output
    assert _run("info", "digits").exit_code == 0


def test_unknown_dataset_is_one_red_line():
    result = _run("info", "nonsense")
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: unknown dataset 'nonsense'")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_download_offline(isolated_env, closed_port, registry):
    spec = get_dataset_spec("usps")
    base = f"http://127.0.0.1:{closed_port}/"
    dead = tuple(dataclasses.replace(f, urls=(base + f.name,)) for f in spec.files)
    register_dataset(dataclasses.replace(spec, files=dead), replace=True)
    result = _run("download", "usps", "--timeout", "5")
    assert result.exit_code == 1
    assert "offline" in result.output and str(isolated_env / "usps") in result.output
    assert "usps.bz2" in result.output and "usps.t.bz2" in result.output
    assert "Traceback" not in result.output


def test_download_through_mirror(tmp_path, gen, http_server, registry):
    published = tmp_path / "pub"
    gen.make_mnist_files(published)
    files = []
    for f in get_dataset_spec("mnist").files:
        http_server.add(f"/m/{f.name}", (published / f.name).read_bytes())
        url = "https://example.invalid/" + f.name
        files.append(RemoteFile(f.name, (url,), sha256=gen.sha256(published / f.name)))
    register_dataset(dataclasses.replace(get_dataset_spec("mnist"), name="tiny", files=tuple(files)))
    target = tmp_path / "target"
    result = _run("download", "tiny", "digits", "--data-dir", str(target),
                  "--mirror", http_server.base + "/m", "--split", "test")
    assert result.exit_code == 0, result.output
    assert "2 file(s) ready" in result.output and "digits: built in" in result.output
    assert sorted(p.name for p in (target / "tiny").iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                                   "t10k-labels-idx1-ubyte.gz"]
