"""Few-shot learning without labels: affine views against torchvision, UMTRA tasks, SimCLR on drawings,
the prototype classifier shared with ProtoNet, fine-tuning, and that no label can reach a label-free method."""

from dataclasses import replace

import pytest
import torch

from course_lib.contrastive.affine_views import (AffineViewConfig, affine_views, affine_views_reference,
                                                 sample_affine)
from course_lib.contrastive.omniglot import DrawingSimCLRConfig, build_drawing_model, train_simclr_drawings, unlabeled
from course_lib.meta import MetaConfig, evaluate, protonet_loss
from course_lib.meta.label_free import finetune_accuracy, finetune_logits, maml_from_encoder
from course_lib.meta.models import Conv4
from course_lib.meta.omniglot import episode_sampler
from course_lib.meta.umtra import umtra_episodes, umtra_sampler

TINY = DrawingSimCLRConfig(channels=8, proj_hidden=16, proj_dim=8, batch_size=16, steps=3, warmup_steps=1)


def _drawings(n=40, side=28, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, side, side)
    x[:, :, 6:22, 6:22] = torch.rand(n, 1, 16, 16, generator=gen)    # ink in the middle, a blank border
    return x


@pytest.mark.parametrize("config", [
    AffineViewConfig(),
    AffineViewConfig(degrees=90, translate=0.0, scale=(1, 1), shear=0),
    AffineViewConfig(degrees=0, translate=0.3, scale=(1, 1), shear=0),
    AffineViewConfig(degrees=0, translate=0.0, scale=(0.5, 1.5), shear=0),
    AffineViewConfig(degrees=0, translate=0.0, scale=(1, 1), shear=40),
], ids=["default", "rotation", "shift", "scale", "shear"])
def test_batched_affine_views_equal_torchvision_image_by_image(config):
    x = _drawings(12)
    params = sample_affine(len(x), config, torch.Generator().manual_seed(1))
    torch.testing.assert_close(affine_views(x, params=params), affine_views_reference(x, params), atol=1e-5, rtol=0)


def test_affine_views_on_a_non_square_image_equal_torchvision():
    x = torch.rand(3, 2, 20, 30, generator=torch.Generator().manual_seed(2))
    params = sample_affine(3, AffineViewConfig(), torch.Generator().manual_seed(3))
    torch.testing.assert_close(affine_views(x, params=params), affine_views_reference(x, params), atol=1e-5, rtol=0)


def test_identity_transform_returns_the_image_and_parameters_follow_the_config():
    x = _drawings(5)
    still = AffineViewConfig(degrees=0, translate=0, scale=(1, 1), shear=0)
    torch.testing.assert_close(affine_views(x, still, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)
    p = sample_affine(4000, AffineViewConfig(degrees=10, translate=0.1, scale=(0.9, 1.1), shear=5),
                      torch.Generator().manual_seed(0))
    assert p["angle"].abs().max() <= 10 and p["angle"].abs().max() > 9.9
    assert 0.9 <= p["scale"].min() and p["scale"].max() <= 1.1 and p["shear"].abs().max() <= 5
    assert abs(p["angle"].mean()) < 0.5  # symmetric


def test_affine_view_config_and_inputs_are_validated():
    with pytest.raises(ValueError, match="scale"):
        AffineViewConfig(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="degrees"):
        AffineViewConfig(degrees=-1)
    with pytest.raises(ValueError, match=r"x\[None\]"):
        affine_views(torch.rand(1, 28, 28))


def test_umtra_tasks_have_distinct_images_as_classes_and_views_of_them_as_queries():
    images = _drawings(30)
    still = AffineViewConfig(degrees=0, translate=0, scale=(1, 1), shear=0)  # views equal to their image
    ep = umtra_episodes(images, n_way=5, n_query=3, meta_batch=4, views=still,
                        generator=torch.Generator().manual_seed(0))
    assert ep.x_support.shape == (4, 5, 1, 28, 28) and ep.x_query.shape == (4, 15, 1, 28, 28)
    assert torch.equal(ep.y_support[0], torch.arange(5))
    assert torch.equal(ep.y_query[2], torch.arange(5).repeat_interleave(3))
    flat = images.flatten(1)
    for t in range(4):
        which = [int((flat - x.flatten()).abs().sum(1).argmin()) for x in ep.x_support[t]]
        assert len(set(which)) == 5                                   # five different images are the classes
        for q, y in zip(ep.x_query[t], ep.y_query[t]):                # each query is a view of its class's image
            torch.testing.assert_close(q, ep.x_support[t][y], atol=1e-5, rtol=0)
    moved = umtra_episodes(images, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    assert (moved.x_query - moved.x_support.repeat_interleave(3, dim=1)).abs().amax() > 0.1  # real augmentation


def test_umtra_is_reproducible_and_trains_protonet():
    images = _drawings(30)
    sample = umtra_sampler(images, n_way=3, n_query=2)
    a, b = sample(2, torch.Generator().manual_seed(5)), sample(2, torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    loss, acc = protonet_loss(Conv4(None, channels=4), a, metric="cosine")
    assert torch.isfinite(loss) and acc.shape == (2,)


def test_label_free_methods_take_an_image_tensor_alone():
    grouped = torch.rand(6, 20, 1, 28, 28)                      # (characters, drawings, ...): the class structure
    for call in (lambda: train_simclr_drawings(build_drawing_model(TINY), grouped, TINY, progress=False),
                 lambda: umtra_sampler(grouped, 5, 1),
                 lambda: umtra_episodes(grouped, 5, 1, 1)):
        with pytest.raises(ValueError, match="unlabeled"):
            call()
    flat = unlabeled(grouped)
    assert flat.shape == (120, 1, 28, 28)
    # the order is shuffled: consecutive images are not the 20 drawings of one character
    where = [int((grouped.flatten(0, 1) - img).abs().flatten(1).sum(1).argmin()) // 20 for img in flat[:20]]
    assert len(set(where)) > 5


def test_simclr_on_drawings_trains_resumes_and_is_deterministic(tmp_path):
    images = unlabeled(torch.rand(4, 20, 1, 28, 28))
    model = build_drawing_model(TINY)
    torch.manual_seed(0)
    ref = build_drawing_model(TINY)
    model.load_state_dict(ref.state_dict())
    history = train_simclr_drawings(model, images, TINY, progress=False)
    assert history.step == 3 and all(torch.isfinite(torch.tensor(history.losses)))
    # interrupted after 1 step, resumed: the same weights as the uninterrupted run
    again = build_drawing_model(TINY)
    again.load_state_dict(ref.state_dict())
    path = tmp_path / "simclr_drawings.pt"
    train_simclr_drawings(again, images, TINY, checkpoint=path, stop_after=1, progress=False)
    resumed = build_drawing_model(TINY)
    resumed.load_state_dict(ref.state_dict())
    train_simclr_drawings(resumed, images, TINY, checkpoint=path, progress=False)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_cosine_prototypes_are_the_frozen_classifier_and_finetuning_fits_the_support_set():
    torch.manual_seed(0)
    encoder = Conv4(None, channels=8)
    tasks = episode_sampler(torch.rand(10, 20, 1, 28, 28), 5, 4, 3)(4, torch.Generator().manual_seed(0))
    _, frozen = protonet_loss(encoder, tasks, impl="loop", metric="cosine")
    torch.testing.assert_close(finetune_accuracy(encoder, tasks, steps=0, lr=0.1), frozen)
    # Scored on its own support set, the frozen classifier of a random encoder errs; a few steps fix that.
    on_support = tasks._replace(x_query=tasks.x_support, y_query=tasks.y_support)
    before = [p.clone() for p in encoder.parameters()]
    untuned = finetune_accuracy(encoder, on_support, steps=0, lr=0.5)
    tuned = finetune_accuracy(encoder, on_support, steps=10, lr=0.5)
    assert untuned.mean() < 0.8 and tuned.mean() > 0.9
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))  # the encoder is not changed


def test_cosine_and_euclidean_protonet_agree_between_vmap_and_loop():
    torch.manual_seed(1)
    model = Conv4(None, channels=4)
    tasks = episode_sampler(torch.rand(8, 20, 1, 28, 28), 3, 1, 2)(3, torch.Generator().manual_seed(0))
    for metric in ("cosine", "euclidean"):
        (lv, av), (ll, al) = protonet_loss(model, tasks, "vmap", metric), protonet_loss(model, tasks, "loop", metric)
        torch.testing.assert_close(lv, ll)
        torch.testing.assert_close(av, al)
    with pytest.raises(ValueError, match="metric"):
        protonet_loss(model, tasks, metric="manhattan")


def test_maml_from_encoder_copies_the_convolutions_and_adds_a_head():
    encoder = build_drawing_model(TINY).encoder
    model = maml_from_encoder(encoder, n_way=5)
    assert model.head.out_features == 5
    for a, b in zip(encoder.encoder.state_dict().values(), model.encoder.state_dict().values()):
        assert torch.equal(a, b)
    score = evaluate(model, episode_sampler(torch.rand(8, 20, 1, 28, 28), 5, 1, 2),
                     MetaConfig(method="maml"), n_tasks=4, generator=torch.Generator().manual_seed(0), batch=2)
    assert 0.0 <= score.mean <= 1.0


def test_finetuning_vmap_equals_the_loop_reference():
    # float64: four SGD steps at lr 0.5 amplify float32 rounding, whose order differs between the two and
    # with the number of threads (measured: 3e-4 apart in float32 on 2 threads, equal on 1)
    torch.manual_seed(0)
    encoder = Conv4(None, channels=8).double()
    tasks = episode_sampler(torch.rand(10, 20, 1, 28, 28, dtype=torch.float64), 5, 4, 3)(
        4, torch.Generator().manual_seed(0))
    per_steps = []
    for steps in (0, 1, 4):
        loop = finetune_logits(encoder, tasks, steps=steps, lr=0.5, impl="loop")          # (4, 15, 5)
        torch.testing.assert_close(finetune_logits(encoder, tasks, steps=steps, lr=0.5, impl="vmap"), loop,
                                   rtol=1e-4, atol=1e-5)
        per_steps.append(loop)
    assert (per_steps[1] - per_steps[0]).abs().max() > 1e-2 and (per_steps[2] - per_steps[1]).abs().max() > 1e-2


def test_every_method_of_the_benchmark_trains_and_scores_on_tiny_data():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.few_shot_label_free import run_methods
    from course_lib.meta.label_free import LabelFreeConfig

    two_steps = dict(meta_batch=2, steps=2)
    tiny = LabelFreeConfig(simclr=replace(TINY, steps=2), umtra=MetaConfig(method="protonet", metric="cosine", **two_steps),
                           maml=MetaConfig(method="maml", **two_steps), protonet=MetaConfig(method="protonet", **two_steps),
                           finetune_steps=1, eval_tasks=4, n_query=2, shots=(1, 2))
    images = torch.rand(12, 20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rows = list(run_methods(tiny, images, images[:8]))
    assert [r[0] for r in rows] == ["simclr_frozen", "simclr_finetuned", "umtra_protonet", "protonet", "maml_from_simclr",
                                    "maml_scratch"]
    assert [r[1] for r in rows] == [False, False, False, True, True, True]  # which methods read labels
    for _, _, seconds, steps, scores in rows:
        assert steps == 2 and seconds > 0 and set(scores) == {1, 2}
        assert all(0.0 <= s.mean <= 1.0 and s.n_tasks == 4 for s in scores.values())
