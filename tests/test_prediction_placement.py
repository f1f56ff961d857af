"""Where the model server runs a prediction: on its event loop while the model is quick."""

from __future__ import annotations

from controller.local.serving.prediction_placement import INLINE_SECONDS, PredictionPlacement


def test_the_first_prediction_runs_in_a_thread_until_one_was_timed() -> None:
    """Nothing is known of a model before its first prediction: it might be slow."""
    assert not PredictionPlacement().inline


def test_a_quick_model_predicts_inline() -> None:
    placement = PredictionPlacement()
    for _ in range(3):  # the warm-up's requests
        placement.observe(0.001)
    assert placement.inline


def test_a_slow_model_predicts_in_a_thread() -> None:
    """A model that sleeps 300 ms (models/faulty) must not stall probes and scrapes."""
    placement = PredictionPlacement()
    placement.observe(0.3)
    assert not placement.inline


def test_one_very_slow_prediction_moves_the_next_to_a_thread_at_once() -> None:
    placement = PredictionPlacement()
    for _ in range(50):
        placement.observe(0.001)
    placement.observe(11 * INLINE_SECONDS)
    assert not placement.inline


def test_a_model_that_speeds_up_again_comes_back_inline() -> None:
    placement = PredictionPlacement()
    placement.observe(0.05)
    for _ in range(20):
        placement.observe(0.001)
    assert placement.inline
