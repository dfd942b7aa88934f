"""What the command-line tests share: reading what a command said, and a clustering run of a second."""

from pathlib import Path


def said(result) -> str:
    """What a command said: its output with rich's error box and line wrapping taken out, for matching whole
    phrases, and the message of an error that `owlearn`'s entry point prints as one line (the test runner
    calls the app beneath that entry point)."""
    text = result.output.replace("│", " ").replace("╭", " ").replace("╰", " ")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f" {result.exception}"
    return " ".join(text.split())


def quick_cluster(folder: Path, out: Path, clusters: int, epochs: int = 1) -> list[str]:
    """`owlearn cluster` arguments for a tiny folder: its own image size, one sub-head, no restarts."""
    return ["cluster", str(folder), "--clusters", str(clusters), "--epochs", str(epochs), "--restart-epochs", "0",
            "--batch-size", "24", "--size", "0", "--sub-heads", "1", "--out", str(out), "--no-progress"]
