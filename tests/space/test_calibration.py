import numpy as np
import pytest

from owlearn.space import EnergyDetector, LOFDetector, MahalanobisDetector, acceptance_threshold, calibrate


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
@pytest.mark.parametrize("rate", [0.5, 0.9, 0.99, 0.999, 1.0])
def test_threshold_accepts_at_least_the_rate_on_the_same_scores(n, rate):
    rng = np.random.default_rng(n)
    for scores in (rng.normal(size=n), rng.integers(0, 3, size=n).astype(float)):  # with and without ties
        t = acceptance_threshold(scores, rate)
        assert (scores >= t).mean() >= rate - 1e-12
        # and it is the largest such threshold: any higher score accepts too few
        higher = scores[scores > t]
        if higher.size:
            assert (scores >= higher.min()).mean() < rate


def test_threshold_needs_no_extra_sample_for_float_noise():
    assert acceptance_threshold(np.arange(10000.0), 0.99) == 100.0  # 0.99 * 10000 = 9900.000000000002


def test_calibrated_acceptance_holds_on_new_samples_from_the_same_distribution():
    rng = np.random.default_rng(0)
    dim, k = 8, 4
    centres = rng.normal(scale=4.0, size=(k, dim))

    def sample(n):
        y = rng.integers(0, k, n)
        return centres[y] + rng.normal(size=(n, dim)), y

    X, y = sample(2000)
    det = calibrate(MahalanobisDetector().fit(X, y), sample(20000)[0], accept_rate=0.99)
    accepted = (det.predict(sample(20000)[0]) == 1).mean()
    assert accepted == pytest.approx(0.99, abs=0.005)  # sampling sd is ~0.001


def test_calibrate_works_for_logit_detectors_and_overrides_contamination():
    logits = np.random.default_rng(1).normal(size=(5000, 10))
    det = EnergyDetector(contamination=0.2).fit(logits=logits)
    calibrate(det, held_out_logits=logits, accept_rate=0.95)
    assert (det.predict(logits=logits) == 1).mean() >= 0.95
    assert (det.predict(logits=logits) == 1).mean() == pytest.approx(0.95, abs=1e-3)


def test_calibrate_lof_on_held_out_features():
    rng = np.random.default_rng(2)
    det = LOFDetector(contamination=None).fit(rng.normal(size=(400, 4)))
    held_out = rng.normal(size=(1000, 4))
    assert calibrate(det, held_out, accept_rate=0.9) is det
    assert (det.predict(held_out) == 1).mean() >= 0.9


def test_rejects_bad_rates_and_scores():
    with pytest.raises(ValueError, match="accept_rate"):
        acceptance_threshold([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="finite"):
        acceptance_threshold([1.0, np.nan], 0.5)
