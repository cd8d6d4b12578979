"""Contrastive self-supervised learning: the loss, the views, the networks, SimCLR training, evaluation.

    losses     NT-Xent / InfoNCE (reference; kernels/ has the fused version), alignment, uniformity
    views      SimCLR views: the torchvision reference and the batched on-device version
    colour     the colour half of a view (jitter, grayscale), fused and exact
    models     ResNet-18 with the CIFAR stem, a small CNN, the projection head
    simclr     SimCLR: configuration, presets (per tier, and the paper's) with their expected results, training
               through `course_lib.training`, on one process or across ranks (`course_lib.distributed`)
    curves     a run's loss and kNN curves, drawn once or redrawn live
    across_ranks  SimCLR's loss across ranks (torchrun), and the comparison that shows why its gather carries gradients
    train      the command line: python -m, or torchrun for several processes
    methods    the objectives beside NT-Xent that share SimCLR's training: MoCo, SimSiam, alignment only, i-Mix
    moco       MoCo's queue of negatives (a ring buffer), its momentum (EMA) key encoder, its InfoNCE
    collapse   alignment, uniformity, effective rank; SimSiam's predictor and stop-gradient loss
    mixing     Mixup and CutMix on a batch of views, beside a per-image reference; the i-Mix loss
    experiments  notebook 08's plans per tier, the collapse monitor, intervals over seeds, its figures
    evaluate   frozen features: weighted kNN, the linear probe, the baselines to beat
    affine_views  views of drawings: small random affine transforms, batched, beside torchvision's
    omniglot   SimCLR on Omniglot drawings from an image tensor alone (Conv-4 encoder)
"""
