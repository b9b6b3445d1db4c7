"""Is the candidate better? Paired per-case differences with a bootstrap interval (issue 11.18).

Hand-made cases: the verdict follows the interval, never the averages alone; too few cases
give no verdict; the interval covers the true mean difference as often as it claims.
"""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.training.metrics import (
    MIN_PAIRED_CASES,
    comparison_text,
    paired_comparison,
)


def _cases(values):
    return {f"case {i:02d}": float(v) for i, v in enumerate(values)}


def test_two_cases_with_a_higher_average_are_not_enough_to_tell():
    """The issue's run: 0.9493 -> 0.9508 on 2 validation cases."""
    paired = paired_comparison(_cases([0.95, 0.9486]), _cases([0.952, 0.9496]))
    assert paired["n"] == 2 and paired["verdict"] == "too few cases"
    assert paired["mean_difference"] == pytest.approx(0.0015)
    text = comparison_text(paired, "Dice")
    assert text.startswith("Not enough validation cases to tell")
    assert f"at least {MIN_PAIRED_CASES} needed" in text and "better" not in text


def test_a_higher_average_inside_the_interval_is_no_clear_difference():
    rng = np.random.default_rng(3)
    old = rng.uniform(0.85, 0.95, 20)
    diffs = rng.normal(0.0, 0.05, 20)
    diffs -= diffs.mean() - 0.003  # the candidate's average is higher, by a hair
    paired = paired_comparison(_cases(old), _cases(old + diffs))
    assert paired["mean_difference"] > 0
    low, high = paired["ci"]
    assert low < 0 < high
    assert paired["verdict"] == "no clear difference"
    assert "better" not in comparison_text(paired)


def test_consistent_gains_are_better_and_consistent_losses_worse():
    old = np.linspace(0.7, 0.9, 12)
    gains = 0.02 + 0.005 * np.sin(np.arange(12))  # every case a little better
    better = paired_comparison(_cases(old), _cases(old + gains))
    assert better["verdict"] == "better" and better["ci"][0] > 0
    worse = paired_comparison(_cases(old + gains), _cases(old))
    assert worse["verdict"] == "worse" and worse["ci"][1] < 0
    assert comparison_text(better).startswith("The candidate is better")


def test_float_noise_is_no_difference():
    """Two exports of the same weights differ by float noise on every case: the interval
    collapses onto it, and that must not read as "better"."""
    old = np.linspace(0.7, 0.9, 12)
    paired = paired_comparison(_cases(old), _cases(old + 1e-12))
    assert paired["verdict"] == "no clear difference" and paired["ci"] == [0.0, 0.0]


def test_only_cases_both_versions_scored_are_paired():
    current = {"a": 0.5, "b": 0.6, "c": float("nan"), "only current": 0.9}
    candidate = {"a": 0.7, "b": 0.5, "c": 0.8, "only candidate": 0.1}
    paired = paired_comparison(current, candidate)
    assert paired["cases"] == ["a", "b"]
    assert paired["differences"] == pytest.approx([0.2, -0.1])
    assert paired["unpaired"] == ["only candidate", "only current"]
    assert paired["unscored"] == ["c"]  # scored NaN by one version: named, not dropped silently
    assert "(3 case(s) left out: not scored by both versions)" in comparison_text(paired)
    assert paired_comparison(None, {})["verdict"] == "too few cases"


def test_the_interval_is_seeded_and_covers_the_known_mean_difference():
    """Per-case differences drawn around a known mean: over many draws the 95% interval
    holds it about as often as it says (bootstrap intervals run a little narrow), and the
    same seed gives the same interval."""
    rng = np.random.default_rng(0)
    true_mean, hits, runs = 0.01, 0, 200
    for _ in range(runs):
        old = rng.uniform(0.6, 0.9, 30)
        paired = paired_comparison(_cases(old), _cases(old + rng.normal(true_mean, 0.03, 30)),
                                   resamples=1000)
        hits += paired["ci"][0] <= true_mean <= paired["ci"][1]
    assert 0.88 <= hits / runs <= 0.99
    old = np.linspace(0, 1, 15)
    new = old + np.linspace(-0.1, 0.2, 15)
    first, again = paired_comparison(_cases(old), _cases(new)), \
        paired_comparison(_cases(old), _cases(new))
    assert first["ci"] == again["ci"]
    assert first["ci"][0] <= first["mean_difference"] <= first["ci"][1]


def test_detection_scores_each_case_for_the_paired_comparison():
    """Detectors get per-case scores too (box F1 at IoU 0.5 of each case), so their verdict is
    paired like the others'. Boxes made up count against a case, as missed ones do: a
    detector that adds boxes cannot win on recall alone."""
    from medviewer.training.evaluate import Collector

    collector = Collector("detection", ["cardiomegaly", "normal heart"])
    hit = (np.array([[10.0, 10, 50, 50]]), np.array([0.9]), np.array([1]))
    extra = (np.array([[10.0, 10, 50, 50], [60.0, 60, 90, 90]]), np.array([0.9, 0.8]),
             np.array([1, 1]))
    miss = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    truth = {"boxes": np.array([[12.0, 11, 49, 50]]), "labels": np.array([1])}
    nothing = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}
    collector.add_boxes(hit, truth, "film A")
    collector.add_boxes(miss, truth, "film B")
    collector.add_boxes(hit, nothing, "film C")  # a box where there is nothing
    collector.add_boxes(miss, nothing, "film D")  # nothing to find, nothing found: no score
    collector.add_boxes(extra, truth, "film E")  # found, plus one made up: 2*1 / (2 + 1)
    assert collector.scores()["per_case"] == pytest.approx(
        {"film A": 1.0, "film B": 0.0, "film C": 0.0, "film E": 2 / 3})
