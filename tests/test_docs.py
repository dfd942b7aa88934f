"""Every Python example in the README and docs/ runs as written.

The examples are what a newcomer copies first; an API change that breaks one should fail here rather than in
a user's terminal. Each block runs in a fresh interpreter in an empty folder (so files it writes stay there),
as a user would paste it. Where a block's last line prints and a comment on that line says what it prints,
the printed text is compared too. The shell examples would train for minutes, so for them only the
commands and options they name are checked against the CLI.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
# `print(...)  # [ 1  1  1 -1 -1 -1]`: the comment is the promised output
PROMISED_OUTPUT = re.compile(r"^print\(.*\)\s+#\s*(\[.*\])\s*$")


def _examples():
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text[:match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}")


EXAMPLES = list(_examples())


def test_the_docs_have_python_examples():
    assert len(EXAMPLES) >= 5, [e.id for e in EXAMPLES]


@pytest.mark.slow
@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last = code.strip().splitlines()[-1]
    promised = PROMISED_OUTPUT.match(last)
    if promised:
        assert result.stdout.strip().splitlines()[-1].split() == promised.group(1).split()


SHELL_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def _owlearn_calls():
    """Every ``owlearn …`` call in the shell examples, as its list of arguments after ``owlearn``."""
    for page in PAGES:
        for match in SHELL_BLOCK.finditer(page.read_text()):
            for line in match.group(1).replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|\|\||;|\|", line):
                    words = shlex.split(part, comments=True)
                    for i, word in enumerate(words):
                        if word.rsplit("/", 1)[-1] == "owlearn" or (word == "-m" and words[i + 1:i + 2] == ["owlearn"]):
                            yield page.relative_to(ROOT), words[i + (2 if word == "-m" else 1):]
                            break


def test_shell_examples_name_existing_commands_and_options():
    from typer.main import get_command

    from owlearn.cli import app

    root = get_command(app)
    context = type(root).context_class(root)
    calls = list(_owlearn_calls())
    assert len(calls) >= 20
    wrong = []
    for page, args in calls:
        command, path = root, []
        while command is not None and hasattr(command, "get_command") and args and not args[0].startswith("-"):
            command, path, args = command.get_command(context, args[0]), [*path, args[0]], args[1:]
        if command is None:
            wrong.append(f"{page}: no command `owlearn {' '.join(path)}`")
            continue
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        wrong += [f"{page}: `owlearn {' '.join(path)}` has no option {a}" for a in args
                  if a.startswith("-") and a != "-" and a.split("=")[0] not in options]
    assert not wrong, "\n".join(wrong)
