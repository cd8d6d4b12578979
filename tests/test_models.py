"""Encoders and head: the CIFAR stem keeps 32x32 resolution, shapes of h and z, input checks."""

import pytest
import torch
import torch.nn as nn

from course_lib.contrastive.models import (ProjectionHead, ResNet18, SimCLRModel, SmallCNN, build_encoder, count_parameters)


def test_resnet18_cifar_stem_is_3x3_stride1_without_maxpool():
    net = ResNet18()
    conv = net.stem[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    seen = {}
    net.stem.register_forward_hook(lambda m, i, o: seen.update(stem=o.shape))
    net.stages[-1].register_forward_hook(lambda m, i, o: seen.update(last=o.shape))
    h = net(torch.rand(2, 3, 32, 32))
    assert seen["stem"] == (2, 64, 32, 32)      # the stem keeps full resolution
    assert seen["last"] == (2, 512, 4, 4)       # 32 -> 16 -> 8 -> 4 over the stages
    assert h.shape == (2, 512) and net.out_dim == 512


def test_resnet18_size_is_the_standard_one():
    # torchvision's resnet18 has 11.69 M parameters with its 1000-way fc; without fc and with a 3x3 stem: 11.17 M
    assert 11.1e6 < count_parameters(ResNet18()) < 11.2e6


def test_small_cnn_and_width():
    net = SmallCNN(width=8)
    assert net(torch.rand(3, 3, 16, 16)).shape == (3, 64) and net.out_dim == 64
    assert build_encoder("small_cnn").out_dim == 256
    assert build_encoder("resnet18", width=16).out_dim == 128


def test_simclr_model_returns_h_and_z():
    enc = SmallCNN(width=4)
    model = SimCLRModel(enc, ProjectionHead(enc.out_dim, 16, 8))
    h, z = model(torch.rand(5, 3, 16, 16))
    assert h.shape == (5, 32) and z.shape == (5, 8)
    model.eval()
    x = torch.rand(2, 3, 16, 16)
    h2, _ = model(x)
    assert torch.equal(h2, enc(x))              # h is the encoder's output, before the head


def test_encoder_rejects_uint8_and_bad_shapes_with_a_message():
    with pytest.raises(TypeError, match="x.float\\(\\) / 255"):
        SmallCNN(4)(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        SmallCNN(4)(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vgg")
