"""Command-line options and checks shared by several commands (no heavy imports: `--help` must stay fast).

Everything here runs when the command line is parsed or before any data is loaded, so that a typo costs
a second, not a training run.
"""

import os
from pathlib import Path

import typer

PRECISIONS = ("auto", "fp32", "bf16")  # the same as owlearn.train.loop.PRECISIONS (tests/test_cli.py checks)
OPTIMIZERS = ("sgd", "adam", "adamw")  # owlearn.train.loop.OPTIMIZERS
SCHEDULES = ("onecycle", "cosine", "constant")  # owlearn.train.loop.SCHEDULES
DETECTORS = ("layers", "knn", "lof", "mahalanobis", "vim", "msp", "energy", "none")  # owlearn.space.make_detector
FEATURE_MAPS = ("tsne", "pca", "none")


def one_of(choices: tuple[str, ...]):
    """A typer callback that refuses any value outside ``choices``, naming them."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


PRECISION_OPTION = typer.Option(
    "auto", callback=one_of(PRECISIONS),
    help="auto (bfloat16 autocast on GPUs that support it, float32 elsewhere), fp32 or bf16 (bf16 also pays on "
         "CPUs with bf16 instructions: 1.5× for the ConvNet on AVX-512 BF16; emulated and slow on others).")


def check_output_file(path: Path, option: str) -> Path:
    """Refuse an output file path that cannot be written, before the work that produces it.

    The file is written later through a temporary file beside it and a rename, so its folder must exist
    and be writable, and the path must not be a folder.
    """
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give a file name, e.g. {path / 'model.owl'}",
                                 param_hint=option)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise typer.BadParameter(f"the folder {folder} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {folder} (read-only, or no permission)", param_hint=option)
    if path.exists() and not os.access(path, os.W_OK):
        raise typer.BadParameter(f"{path} exists and cannot be replaced (no permission)", param_hint=option)
    return path


def check_output_folder(path: Path, option: str) -> Path:
    """Refuse an output folder that is a file, or that cannot be created or written, before the work."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a folder", param_hint=option)
    existing = path
    while not existing.exists():  # the nearest folder that exists must let us create the rest
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {existing} (read-only, or no permission)", param_hint=option)
    return path


def check_data_dir(path: Path | None) -> Path | None:
    """A typer callback for ``--data-dir``: a folder, or a path where one can be made; never a file."""
    if path is not None and path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a folder")
    return path


DATA_DIR_HELP = "Dataset folder (default: $OWLEARN_DATA, else ~/.cache/owlearn)."
DATA_DIR_OPTION = typer.Option(None, "--data-dir", callback=check_data_dir, help=DATA_DIR_HELP)


def check_class_name(name: str, option: str = "--name", existing: list[str] | tuple[str, ...] = ()) -> str:
    """A new class's name by the rules of :func:`owlearn.class_names.check_class_name`, as a usage error."""
    from owlearn.class_names import ClassNameError
    from owlearn.class_names import check_class_name as check

    try:
        return check(name, existing)
    except ClassNameError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def check_device(device: str) -> str:
    """Refuse a device this machine cannot run on (imports PyTorch: call it in a command's body)."""
    from owlearn.train.loop import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None
    return device
