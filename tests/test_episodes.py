"""Few-shot episodes: shapes, labels, disjoint support/query, rotations, determinism, errors."""

import pytest
import torch

from course_lib.data import Episodes, sample_episodes

C, D = 12, 20


def _coded_images(c=C, d=D, side=6):
    """(c, d, 1, side, side): pixel (0, 0) holds the class id + 1, pixel (0, 1) the drawing id + 1, the rest 0."""
    x = torch.zeros(c, d, 1, side, side)
    x[:, :, 0, 0, 0] = torch.arange(c, dtype=torch.float32).view(c, 1) + 1
    x[:, :, 0, 0, 1] = torch.arange(d, dtype=torch.float32).view(1, d) + 1
    return x


def _ids(x):
    return x[..., 0, 0, 0].long() - 1, x[..., 0, 0, 1].long() - 1  # class id, drawing id


def test_shapes_dtypes_and_labels():
    ep = sample_episodes(_coded_images(), n_way=5, k_shot=2, n_query=3, meta_batch=7,
                         generator=torch.Generator().manual_seed(0))
    assert isinstance(ep, Episodes)
    assert ep.x_support.shape == (7, 10, 1, 6, 6) and ep.x_query.shape == (7, 15, 1, 6, 6)
    assert ep.y_support.dtype == torch.int64 and ep.y_query.dtype == torch.int64
    assert torch.equal(ep.y_support[0], torch.arange(5).repeat_interleave(2))
    assert torch.equal(ep.y_query[3], torch.arange(5).repeat_interleave(3))


def test_each_label_is_one_class_and_support_query_are_disjoint():
    ep = sample_episodes(_coded_images(), 5, 3, 4, 20, generator=torch.Generator().manual_seed(1))
    cs, ds = _ids(ep.x_support)  # (T, N*K)
    cq, dq = _ids(ep.x_query)
    for t in range(20):
        classes = [set(cs[t][ep.y_support[t] == n].tolist()) | set(cq[t][ep.y_query[t] == n].tolist()) for n in range(5)]
        assert all(len(c) == 1 for c in classes), "a label mixes classes"
        assert len(set().union(*classes)) == 5, "a class appears under two labels"
        for n in range(5):
            drawn = ds[t][ep.y_support[t] == n].tolist() + dq[t][ep.y_query[t] == n].tolist()
            assert len(set(drawn)) == 7, "a drawing is used twice in one class of a task"


def test_labels_are_permuted_per_task_and_all_classes_are_used():
    ep = sample_episodes(_coded_images(), 5, 1, 1, 300, generator=torch.Generator().manual_seed(2))
    label0 = _ids(ep.x_support)[0][:, 0]  # the class that got label 0, per task
    counts = torch.bincount(label0, minlength=C)
    assert (counts > 0).all() and counts.max() < 60  # about 300/12 = 25 each


def test_seeded_generator_is_deterministic():
    x = _coded_images()
    a = sample_episodes(x, 3, 1, 2, 4, generator=torch.Generator().manual_seed(3), rotate=True)
    b = sample_episodes(x, 3, 1, 2, 4, generator=torch.Generator().manual_seed(3), rotate=True)
    c = sample_episodes(x, 3, 1, 2, 4, generator=torch.Generator().manual_seed(4), rotate=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a.x_support, c.x_support)


def test_rotation_classes_are_rotations_of_one_character():
    x = _coded_images(c=2)  # 2 characters x 4 rotations = 8 classes: 8-way tasks use all of them
    ep = sample_episodes(x, 8, 2, 3, 10, generator=torch.Generator().manual_seed(5), rotate=True)
    for t in range(10):
        seen = set()
        for n in range(8):
            imgs = torch.cat([ep.x_support[t][ep.y_support[t] == n], ep.x_query[t][ep.y_query[t] == n]])
            found = None
            for k in range(4):
                back = torch.rot90(imgs, -k, dims=(-2, -1))  # undo k quarter turns: the codes return to the corner
                if (back[:, 0, 0, 0] > 0).all() and (back[:, 0, 0, 1] > 0).all():
                    found = (int(back[0, 0, 0, 0].item()), k)
                    assert torch.equal(back, x[found[0] - 1, back[:, 0, 0, 1].long() - 1])
            assert found is not None
            seen.add(found)
        assert len(seen) == 8, "each (character, rotation) pair should be its own class"


def test_no_rotation_without_rotate():
    ep = sample_episodes(_coded_images(), 4, 1, 1, 10, generator=torch.Generator().manual_seed(6))
    assert (ep.x_support[..., 0, 0, 0] > 0).all()  # codes stay in the top-left corner


def test_follows_the_images_device_with_a_cpu_generator():
    x = _coded_images().double()
    ep = sample_episodes(x, 2, 1, 1, 3, generator=torch.Generator().manual_seed(0))
    assert all(t.device == x.device for t in ep) and ep.x_support.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_episodes_match_cpu_with_the_same_cpu_generator():
    x = _coded_images()
    a = sample_episodes(x, 5, 1, 3, 8, generator=torch.Generator().manual_seed(7), rotate=True)
    b = sample_episodes(x.cuda(), 5, 1, 3, 8, generator=torch.Generator().manual_seed(7), rotate=True)
    assert all(v.device.type == "cuda" and torch.equal(u, v.cpu()) for u, v in zip(a, b))


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_way=13, k_shot=1, n_query=1, meta_batch=2), "only 12 classes"),
    (dict(n_way=49, k_shot=1, n_query=1, meta_batch=2, rotate=True), "4 rotations"),
    (dict(n_way=5, k_shot=5, n_query=16, meta_batch=2), "only 20 drawings"),
    (dict(n_way=0, k_shot=1, n_query=1, meta_batch=2), "n_way must be"),
    (dict(n_way=5, k_shot=1, n_query=-1, meta_batch=2), "n_query must be"),
    (dict(n_way=5, k_shot=1, n_query=0, meta_batch=2), "n_query must be a whole number >= 1"),  # nothing to score
    (dict(n_way=5.0, k_shot=1, n_query=1, meta_batch=2), "n_way must be a whole number"),
    (dict(n_way=5, k_shot=1, n_query=1, meta_batch=0), "meta_batch must be"),
])
def test_impossible_requests_raise_clear_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        sample_episodes(_coded_images(), **kwargs)


def test_numpy_integers_are_whole_numbers_too():
    import numpy as np

    ep = sample_episodes(_coded_images(), n_way=np.int64(3), k_shot=np.int32(1), n_query=np.int64(2), meta_batch=2)
    assert ep.x_support.shape[:2] == (2, 3) and ep.y_query.shape == (2, 6)


def test_rejects_non_square_rotation_and_flat_images():
    with pytest.raises(ValueError, match="square"):
        sample_episodes(torch.zeros(5, 20, 1, 4, 6), 2, 1, 1, 1, rotate=True)
    with pytest.raises(ValueError, match="classes, drawings"):
        sample_episodes(torch.zeros(5, 20), 2, 1, 1, 1)
