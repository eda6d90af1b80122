"""rlhf_course.critic_free_lm: smoothing, Gao et al.'s best-of-n fit, rewards at a matched KL, the gold turn."""
import numpy as np
import pytest

from rlhf_course import critic_free_lm as lm


def test_smooth_is_a_trailing_mean():
    x = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(lm.smooth(x, 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(lm.smooth(x, 1), x)
    with pytest.raises(ValueError):
        lm.smooth(x, 0)


def test_bon_fit_recovers_the_form():
    kl = np.log(np.arange(1, 65)) - (np.arange(1, 65) - 1) / np.arange(1, 65)
    d = np.sqrt(kl)
    fit = lm.gao_bon_fit(kl, d * (1.3 - 0.4 * d))
    assert fit["a"] == pytest.approx(1.3) and fit["b"] == pytest.approx(0.4) and fit["r2"] == pytest.approx(1.0)
    assert fit["peak_d"] == pytest.approx(1.3 / 0.8)
    np.testing.assert_allclose(lm.gao_bon_curve(d, 1.3, 0.4), d * (1.3 - 0.4 * d))
    with pytest.raises(ValueError):
        lm.gao_bon_fit([-1.0, 1.0], [0.0, 1.0])


def test_at_kl_interpolates_on_the_first_crossing():
    kl = np.array([0.0, 1.0, 2.0, 1.5, 3.0])
    v = np.array([0.0, 10.0, 20.0, 99.0, 30.0])
    assert lm.at_kl(kl, v, 1.5) == pytest.approx(15.0)
    assert lm.at_kl(kl, v, 0.0) == 0.0
    assert np.isnan(lm.at_kl(kl, v, 4.0))


def test_gold_turn():
    gold = np.concatenate([np.linspace(0, 1, 50), np.linspace(1, 0, 50)])
    proxy = np.linspace(0, 2, 100)
    t = lm.gold_turn(gold, proxy, window=1)
    assert t["turned"] and t["peak"] == 49
    assert not lm.gold_turn(proxy, proxy, window=1)["turned"]
