"""The examples in the docstrings of owlearn.space run and print what they claim."""

import doctest

import pytest

from owlearn.space import _state, calibration, gaussian, outliers


@pytest.mark.parametrize("module", [gaussian, outliers, calibration, _state], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
