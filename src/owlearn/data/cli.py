"""``owlearn data``: list, download and inspect datasets.

Mounted by the top-level CLI as ``owlearn data``; runnable on its own for tests::

    from typer.testing import CliRunner
    CliRunner().invoke(app, ["list"])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from owlearn._options import DATA_DIR_HELP, check_data_dir

app = typer.Typer(
    name="data",
    help="List, download and inspect the datasets owlearn knows.",
    no_args_is_help=True,
    add_completion=False,
)

_out = Console()
_err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", callback=check_data_dir, help=DATA_DIR_HELP, show_default=False
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can act on: shown as one red line with exit code 1, never as a traceback.

    Imported when a command runs, not with this module: the dataset modules import PyTorch, which
    ``owlearn --help`` does not need."""
    from owlearn.data.download import ChecksumError, DownloadError
    from owlearn.data.formats import DatasetFormatError

    return (DatasetFormatError, ChecksumError, DownloadError, FileNotFoundError, ValueError, TypeError)


def _friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as err:
            if not isinstance(err, _user_errors()):
                raise
            message = " ".join(str(err).split())  # one line, whatever the message
            _err.print(
                f"[bold red]error:[/bold red] [red]{escape(message)}[/red]", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _splits_text(splits: dict[str, int]) -> str:
    return ", ".join(f"{name} {size:,}" for name, size in splits.items())


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape else "?"


def _where(info: dict[str, Any]) -> str:
    if info["builtin"]:
        return "[green]built in[/green]"
    if info["found"]:
        return "[green]yes[/green]: " + escape(", ".join(info["locations"]))
    if info["locations"]:
        return "[yellow]partly[/yellow]: " + escape(", ".join(info["locations"]))
    return "[dim]no[/dim]"


@app.command("list")
@_friendly_errors
def list_command(data_dir: DataDir = None) -> None:
    """List the datasets: splits, image shape, classes, and whether (and where) they are on this machine."""
    from owlearn.data.sources import dataset_info, default_data_dir, list_datasets

    table = Table(title=f"owlearn datasets (data folder: {data_dir or default_data_dir()})")
    for column in ("name", "splits", "shape", "classes"):
        table.add_column(column)
    table.add_column("local", overflow="fold")
    for name in list_datasets():
        info = dataset_info(name, data_dir)
        table.add_row(
            name, _splits_text(info["splits"]), _shape_text(info["shape"]), str(info["num_classes"]),
            _where(info),
        )
    _out.print(table)


@app.command("download")
@_friendly_errors
def download_command(
    names: Annotated[
        list[str], typer.Argument(help="Dataset names (see `owlearn data list`).", show_default=False)
    ],
    data_dir: DataDir = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Base URL or local folder with the files (default: $OWLEARN_MIRROR).", show_default=False
        ),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Only the files of this split (repeatable; default: all splits).",
                     show_default=False),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for a connection or a read.")] = 60.0,
) -> None:
    """Download datasets into the data folder, verifying every file against its published checksum.

    Files already present and intact are kept. Offline? The error says which files to put where.
    """
    from owlearn.data.sources import dataset_info, download_dataset

    for name in names:
        info = dataset_info(name, data_dir)
        if info["builtin"]:
            _out.print(f"{info['name']}: built in, nothing to download")
            continue
        paths = download_dataset(name, data_dir, mirror, splits=split, timeout=timeout)
        folders = ", ".join(sorted({str(p.parent) for p in paths}))
        _out.print(f"[green]{escape(info['name'])}[/green]: {len(paths)} file(s) ready in {escape(folders)}")


@app.command("info")
@_friendly_errors
def info_command(
    name: Annotated[str, typer.Argument(help="Dataset name, or folder:PATH for a folder of images.")],
    data_dir: DataDir = None,
) -> None:
    """Show a dataset's splits, shape, classes, files, checksums and where its files are."""
    from owlearn.data.sources import dataset_info

    info = dataset_info(name, data_dir)
    _out.print(f"[bold]{escape(info['name'])}[/bold]: {escape(info['title'])}")
    if info["homepage"]:
        _out.print(f"  homepage:  {info['homepage']}")
    _out.print(f"  splits:    {_splits_text(info['splits'])}")
    _out.print(f"  shape:     {_shape_text(info['shape'])}")
    classes = info["classes"]
    names_text = ", ".join(classes) if classes else "read from the data files"
    _out.print(f"  classes:   {info['num_classes']} ({escape(names_text)})", highlight=False)
    if info["options"]:
        options = ", ".join(f"{k}={v!r}" for k, v in info["options"].items())
        _out.print(f"  options:   {options}", highlight=False)
    if info["builtin"]:
        _out.print("  files:     none (the data ships with an installed package)")
        return
    if info["data_dir"]:
        _out.print(f"  downloads: {info['data_dir']}")
    if not info["files"]:
        return
    table = Table("file", "size", "checksum", "found at", show_edge=False)
    for f in info["files"]:
        digest = f["sha256"] or f["md5"]
        checksum = f"{f['checksum']} {digest[:16]}…" if digest else "[yellow]no published checksum[/yellow]"
        size = f"{f['size']:,}" if f["size"] else "?"
        table.add_row(f["name"], size, checksum, escape(f["path"]) if f["path"] else "[dim]missing[/dim]")
    _out.print(table)
