"""Command-line options shared by several commands (no heavy imports: `--help` must stay fast)."""

import typer

PRECISION_OPTION = typer.Option(
    "auto", help="auto (bfloat16 autocast on GPUs that support it, float32 elsewhere), fp32 or bf16.")
