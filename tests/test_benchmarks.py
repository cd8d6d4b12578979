"""The benchmark scripts' own arithmetic, on a CPU (their measurements run on the hardware they describe)."""

import pytest

from benchmarks.simclr import tta_per_class


@pytest.mark.parametrize("cuda, batch", [(False, 64), (True, 256)], ids=["cpu quick", "gpu quick"])
def test_the_quick_time_to_accuracy_run_holds_at_least_two_batches(cuda, batch):
    """--quick on a GPU trains at batch 256: 20 images per class (200) would be less than one batch."""
    train, test = tta_per_class(True, cuda, batch)
    assert 10 * train >= 2 * batch and test >= 1


def test_the_full_runs_keep_their_splits():
    assert tta_per_class(False, True, 512) == (None, None)
    assert tta_per_class(False, False, 256) == (1000, 500)
