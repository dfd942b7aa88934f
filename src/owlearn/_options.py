"""Command-line options shared by several commands (no heavy imports: `--help` must stay fast)."""

import typer

PRECISIONS = ("auto", "fp32", "bf16")


def _check_precision(value: str) -> str:
    # checked when the command line is parsed, before any data is loaded or a network built
    if value not in PRECISIONS:
        raise typer.BadParameter(f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


PRECISION_OPTION = typer.Option(
    "auto", callback=_check_precision,
    help="auto (bfloat16 autocast on GPUs that support it, float32 elsewhere), fp32 or bf16.")
