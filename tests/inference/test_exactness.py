""" "Exact" is relative to the logits' size and needs the same top-5 classes."""

import torch

from deepres.inference import agreement


def test_rounding_of_a_confident_model_is_exact():
    """Logits near 4,900 that differ by 7e-4 (relative 1.5e-7): float rounding, not an error
    (the absolute 1e-4 rule refused such an export)."""
    reference = torch.linspace(-4900, 4900, 10).repeat(3, 1)
    candidate = reference + 7e-4
    result = agreement(reference, candidate)
    assert result.exact and result.top5
    assert abs(result.max_diff - 7e-4) < 1e-4


def test_small_logits_keep_the_absolute_bound():
    reference = torch.randn(4, 10)
    assert agreement(reference, reference + 5e-5).exact
    assert not agreement(reference, reference + 5e-4).exact


def test_a_changed_top5_is_not_exact_even_when_close():
    """Every logit within the tolerance (1e-4 x 5), yet class 5, 8e-4 below the 5th best in
    the reference (more than the tolerance: no tie), overtakes it: the top-5 check alone says
    NOT exact."""
    reference = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 1.0 - 8e-4]])
    candidate = reference.clone()
    candidate[0, 4] -= 4.5e-4
    candidate[0, 5] += 4.5e-4  # class 5 enters the top 5 and class 4 leaves it
    assert candidate[0, 5] > candidate[0, 4]
    result = agreement(reference, candidate)
    assert result.max_diff <= result.tolerance  # close: the difference alone would pass
    assert not result.top5 and not result.exact
    assert agreement(reference, reference.clone()).exact  # the same logits are exact


def test_ties_may_reorder_within_the_tolerance():
    reference = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 1.0 - 1e-6]])
    candidate = reference.clone()
    candidate[0, 5] += 2e-6  # the two tied classes swap places at rank 5
    assert agreement(reference, candidate).exact
