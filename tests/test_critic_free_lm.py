"""rlhf_course.critic_free_lm: rewards at a matched KL, the gold turn, time per episode; best_of_n's Gao fit."""
import numpy as np
import pytest

from rlhf_course import best_of_n
from rlhf_course import critic_free_lm as lm
from rlhf_course.diagnose import RunLog


def test_bon_fit_recovers_the_form():
    kl = np.log(np.arange(1, 65)) - (np.arange(1, 65) - 1) / np.arange(1, 65)
    d = np.sqrt(kl)
    fit = best_of_n.gao_bon_fit(kl, d * (1.3 - 0.4 * d))
    assert fit["a"] == pytest.approx(1.3) and fit["b"] == pytest.approx(0.4) and fit["r2"] == pytest.approx(1.0)
    assert fit["peak_d"] == pytest.approx(1.3 / 0.8)
    np.testing.assert_allclose(best_of_n.gao_bon_curve(d, 1.3, 0.4), d * (1.3 - 0.4 * d))
    with pytest.raises(ValueError):
        best_of_n.gao_bon_fit([1.0], [0.0])


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


def test_matched_kl_table_reads_each_run_where_its_kl_reaches_the_target():
    kl = np.linspace(0, 4, 41)
    runs = {"a": {"kl": kl, "gold": kl.copy(), "proxy": 2 * kl}, "b": {"kl": kl / 4, "gold": kl, "proxy": kl}}
    t = lm.matched_kl_table(runs, [1.0, 2.0], window=1)
    assert t["a"]["gold"] == pytest.approx([1.0, 2.0]) and t["a"]["proxy"] == pytest.approx([2.0, 4.0])
    assert t["b"]["gold"][0] == pytest.approx(4.0) and np.isnan(t["b"]["gold"][1])  # b ends at KL 1
    assert t["a"]["turn"]["peak"] == 40 and not t["a"]["turn"]["turned"] and t["b"]["end_kl"] == pytest.approx(1.0)


def test_seconds_per_episode_for_ppo_and_grpo_summaries():
    ppo = RunLog(columns={}, config={"batch_size": 64}, summary={"seconds": 12.8, "iterations": 100})
    grpo = RunLog(columns={}, config={"n_prompts": 16, "group_size": 4},
                  summary={"seconds": 6.4, "iterations": 100, "episodes": 6400})
    assert lm.seconds_per_episode(ppo) == pytest.approx(0.002)
    assert lm.seconds_per_episode(grpo) == pytest.approx(0.001)
