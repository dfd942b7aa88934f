"""Every Python example in the README and docs/ runs as written.

The examples are what a newcomer copies first; an API change that breaks one should fail here rather than in
a user's terminal. Each block runs in a fresh interpreter in an empty folder (so files it writes stay there),
as a user would paste it. Where a block's last line prints and a comment on that line says what it prints,
the printed text is compared too.
"""

import re
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
