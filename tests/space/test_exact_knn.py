"""The blocked float32 k-NN search must return exactly what a float64 brute force returns."""

import numpy as np
import pytest
import torch

from owlearn.space import outliers
from owlearn.space.outliers import _NeighborIndex


def _brute(Q, R, k, exclude_self=False):
    d2 = ((Q[:, None, :] - R[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(d2, idx, 1)), idx


@pytest.fixture
def small_blocks(monkeypatch):
    # tiny blocks, so that a few hundred points exercise every path of the blocked search
    monkeypatch.setattr(outliers, "_SELF_BLOCK", 128)
    monkeypatch.setattr(outliers, "_CROSS_WIDTH", 192)
    monkeypatch.setattr(outliers, "_CROSS_ELEMS", 192 * 64)


@pytest.mark.parametrize("n_ref", [37, 450])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_brute_force(small_blocks, n_ref, dtype):
    rng = np.random.default_rng(n_ref)
    R = (rng.normal(size=(n_ref, 12)) + 50.0).astype(dtype)  # far from 0: centring must handle it
    Q = (rng.normal(size=(150, 12)) * 1.5 + 50.0).astype(dtype)
    index = _NeighborIndex(torch.from_numpy(R))
    k = min(20, n_ref - 1)
    for query, exclude in ((Q, False), (None, True)):
        dist, idx = index.query(None if query is None else torch.from_numpy(Q).double(), k)
        want_d, want_i = _brute((R if query is None else Q).astype(np.float64), R.astype(np.float64), k, exclude)
        np.testing.assert_allclose(dist.numpy(), want_d, rtol=1e-12)
        np.testing.assert_array_equal(idx.numpy(), want_i)


def test_duplicates_and_forced_float64_fallback(small_blocks, monkeypatch):
    rng = np.random.default_rng(1)
    R = rng.normal(size=(400, 5))
    R[:30] = R[0]  # 30 copies: ties at distance 0 that float32 cannot order
    index = _NeighborIndex(torch.from_numpy(R))
    dist, idx = index.query(None, 20)
    want_d, _ = _brute(R, R, 20, exclude_self=True)
    np.testing.assert_allclose(dist.numpy(), want_d, rtol=1e-12, atol=1e-12)
    assert (idx.numpy() != np.arange(400)[:, None]).all()  # each point excludes itself, not its copies
    assert (dist[:30].numpy() == 0).all()

    monkeypatch.setattr(outliers, "_EXTRA", 0)  # no slack: the error bound fails for every query
    redone = []
    original = _NeighborIndex._float64_rows

    def spy(self, Q64, rows, kk, **kw):
        redone.append(rows.numel())
        return original(self, Q64, rows, kk, **kw)

    monkeypatch.setattr(_NeighborIndex, "_float64_rows", spy)
    R, Q = R[29:], rng.normal(size=(50, 5))  # without ties, so that the indices are unique too
    dist, idx = _NeighborIndex(torch.from_numpy(R)).query(torch.from_numpy(Q), 7)
    assert redone == [50]
    want_d, want_i = _brute(Q, R, 7)
    np.testing.assert_allclose(dist.numpy(), want_d, rtol=1e-12)
    np.testing.assert_array_equal(idx.numpy(), want_i)


def test_k_out_of_range_is_an_error():
    index = _NeighborIndex(torch.zeros(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="neighbours"):
        index.query(None, 5)
