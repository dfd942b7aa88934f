"""The examples in the docstrings of owlearn.space run and print what they claim."""

import doctest

import pytest

from owlearn.space import _state, calibration, gaussian, outliers


@pytest.mark.parametrize("module", [gaussian, outliers, calibration, _state], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_detector_example_of_docs_rejection_prints_what_it_says(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "rejection.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if 'make_detector("knn"' in b]
    exec(compile(block, "docs/rejection.md", "exec"), {})
    claimed = block.rsplit("# ", 1)[1].strip()
    assert capsys.readouterr().out.strip() == claimed
