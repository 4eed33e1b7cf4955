"""The paired bootstrap the gate reads: no lead gives p 1, a lead on most cases gives p near 0,
and a lead of a few hits in a few hundred cases is not told from noise."""
import numpy as np

from components.evaluation.significance import paired_lead_p


def test_a_lead_is_told_from_noise_by_its_size_and_its_cases():
    hits = np.zeros(237)
    assert paired_lead_p(hits, hits, 500, seed=0) == 1.0                       # a tie is no lead
    clear = np.r_[np.ones(60), np.zeros(177)]
    assert paired_lead_p(clear, hits, 500, seed=0) == 0.0
    three, one = np.r_[np.ones(3), np.zeros(234)], np.r_[np.ones(1), np.zeros(236)]
    assert 0.05 < paired_lead_p(three, one, 2000, seed=0) < 0.5               # two hits more: noise
    assert paired_lead_p(three, one, 2000, seed=0) == paired_lead_p(three, one, 2000, seed=0)   # seeded
    assert paired_lead_p(np.array([]), np.array([]), 10, seed=0) == 1.0
