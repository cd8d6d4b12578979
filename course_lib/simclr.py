"""SimCLR training, written once: device-resident data, batched views, NT-Xent, checkpoints that resume.

    cfg = pick(PRESETS)                                   # the preset of the current tier
    model = build_model(cfg).to(device())
    history = train_simclr(model, images, cfg, labels=labels, test_images=xt, test_labels=yt,
                           checkpoint="runs/simclr.pt")   # resumes from the checkpoint if it exists

Why it is fast: the training images live on the device as uint8 (50,000 CIFAR images are 150 MB);
each step indexes a batch there and draws both views with `course_lib.augment.simclr_views`, batched,
so no CPU worker decodes or augments image by image. On CUDA the step runs in bfloat16 autocast with
channels_last tensors (what tensor cores want) and, optionally, `torch.compile`. On a CPU, channels_last
alone was measured 25% faster for the small CNN (oneDNN prefers NHWC too).

Why it resumes exactly: a checkpoint is written atomically at the end of every epoch (and when the
time budget stops a run) with the model, optimizer, position in the epoch, the epoch's shuffle, the
history and every RNG state, through `course_lib.checkpoint`. The learning rate is a pure function of
the step, so on CPU a resumed run reproduces the uninterrupted run's losses bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from course_lib.augment import ViewConfig, simclr_views
from course_lib.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from course_lib.evaluate import extract_features, knn_accuracy
from course_lib.losses import nt_xent
from course_lib.models import ProjectionHead, SimCLRModel, build_encoder
from course_lib.optim import LARS, learning_rate


@dataclass(frozen=True)
class SimCLRConfig:
    """One SimCLR run. Learning rates are peak values, reached after the warmup."""

    arch: str = "resnet18"            # encoder: "resnet18" (CIFAR stem) or "small_cnn"
    width: int = 64                   # channels of the encoder's first stage
    proj_hidden: int = 2048           # hidden units of the projection head
    proj_dim: int = 128               # size of z
    train_per_class: int | None = None  # training images per class (None: all 5,000)
    test_per_class: int | None = None   # test images per class for evaluation (None: all 1,000)
    epochs: int = 200
    batch_size: int = 512             # images per step (2 x batch_size views)
    optimizer: str = "lars"           # "lars", "sgd" (momentum, nesterov) or "adamw"
    lr: float = 0.8                   # peak learning rate
    weight_decay: float = 1e-5        # on weights only; biases and BatchNorm parameters are not decayed
    momentum: float = 0.9             # SGD / LARS momentum (AdamW uses its default betas)
    warmup_epochs: float = 10.0       # linear warmup, then cosine decay to 0 at the last step
    temperature: float = 0.2          # NT-Xent temperature
    views: ViewConfig = ViewConfig()  # augmentation; views.size is also the evaluation resolution
    knn_every: int = 10               # epochs between kNN checks (0: only at the end)
    time_budget_min: float | None = None  # stop cleanly after this many minutes of this call (None: no limit)
    anneal_to_budget: bool = False    # cosine decay reaches 0 when the budget is spent (if before `epochs`)
    amp: bool = True                  # bfloat16 autocast, on CUDA only
    channels_last: bool = True        # NHWC memory layout (faster on CUDA and, for convolutions, on CPU)
    compile: bool = False             # torch.compile the model (CUDA: pays off after ~1 minute of compiling)
    live_plot: bool = True            # redraw the loss and kNN curves in a notebook after every epoch
    seed: int = 0


PRESETS = {
    # CI: a tiny CNN on 2,000 images at 16 px, 20 epochs (about 45 s on one CPU core), or 1.5 minutes.
    "smoke": SimCLRConfig(
        arch="small_cnn", width=16, proj_hidden=128, proj_dim=64, train_per_class=200, test_per_class=100,
        epochs=20, batch_size=256, optimizer="adamw", lr=3e-3, weight_decay=1e-4, warmup_epochs=1,
        temperature=0.2, views=ViewConfig(size=16, scale=(0.2, 1.0)), knn_every=5, time_budget_min=1.5,
        anneal_to_budget=True, live_plot=False,
    ),
    # No GPU: a small CNN at 16 px on 10,000 images, 16 minutes with the cosine timed to end on the clock
    # (results in notebook 03; 16 px costs a quarter of the FLOPs of 32 px, channels_last ~25% less CPU time).
    "laptop": SimCLRConfig(
        arch="small_cnn", width=32, proj_hidden=256, proj_dim=64, train_per_class=1000, test_per_class=500,
        epochs=60, batch_size=256, optimizer="adamw", lr=3e-3, weight_decay=1e-4, warmup_epochs=1,
        temperature=0.2, views=ViewConfig(size=16, scale=(0.2, 1.0)), knn_every=4, time_budget_min=16.0,
        anneal_to_budget=True,
    ),
    # A GPU: ResNet-18 with the CIFAR stem, all of CIFAR-10, a solo-learn-style recipe (LARS, t = 0.2).
    # Unmeasured here (no GPU); the cosine is timed to end at 15 minutes if 500 epochs would take longer.
    "full": SimCLRConfig(epochs=500, batch_size=512, lr=0.8, knn_every=25, compile=True, time_budget_min=15.0,
                         anneal_to_budget=True),
}


def load_data(config: SimCLRConfig, root=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-10 for `config`: train images (N, 3, 32, 32) uint8, labels (N,), test images, test labels.

    Class-balanced subsets of train_per_class / test_per_class images per class (seeds 0 and 1, the
    same on every machine), or the full splits where those are None.
    """
    from course_lib.data import class_subset, load_cifar10

    images, labels = load_cifar10("train", root=root)
    test_images, test_labels = load_cifar10("test", root=root)
    if config.train_per_class is not None:
        images, labels = class_subset(images, labels, config.train_per_class, seed=0)
    if config.test_per_class is not None:
        test_images, test_labels = class_subset(test_images, test_labels, config.test_per_class, seed=1)
    return images, labels, test_images, test_labels


def build_model(config: SimCLRConfig) -> SimCLRModel:
    """Encoder and projection head described by `config` (on the CPU; move it with .to(device))."""
    encoder = build_encoder(config.arch, config.width)
    return SimCLRModel(encoder, ProjectionHead(encoder.out_dim, config.proj_hidden, config.proj_dim))


def make_optimizer(model: nn.Module, config: SimCLRConfig) -> torch.optim.Optimizer:
    """The optimizer named by config.optimizer; weight decay only on weights (ndim > 1)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "lars":
        return LARS(groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'lars', 'sgd' or 'adamw'.")


@dataclass
class History:
    """What a run produced, over all its resumed segments."""

    losses: list[float] = field(default_factory=list)        # NT-Xent of every step
    epoch_losses: list[float] = field(default_factory=list)  # mean loss of every completed epoch
    knn: list[tuple[float, float, float]] = field(default_factory=list)  # (epochs done, seconds, top-1 in [0, 1])
    seconds: float = 0.0          # wall-clock training time, kNN checks included, all segments
    images_seen: int = 0          # images per step x steps (each gives 2 views)
    segments: list[float] = field(default_factory=list)      # seconds of each call of train_simclr
    stopped_by_budget: bool = False  # the budget ran out before the schedule ended: resume to continue
    annealed_early: bool = False     # anneal_to_budget ended the schedule on time, before `epochs`

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0


def _identity(config: SimCLRConfig) -> str:
    """The config fields that define the run's maths; a budget or a plot may change between segments."""
    return repr(replace(config, time_budget_min=None, live_plot=False, knn_every=0, compile=False))


def _knn_check(model, cfg, labels, images, test_images, test_labels) -> float:
    bank = extract_features(model.encoder, images, cfg.views.size)
    test = extract_features(model.encoder, test_images, cfg.views.size)
    return knn_accuracy(bank, labels, test, test_labels)


def train_simclr(model: SimCLRModel, images: torch.Tensor, config: SimCLRConfig, labels: torch.Tensor | None = None,
                 test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                 checkpoint: str | Path | None = None, resume: bool = True, callback=None,
                 progress: bool = True) -> History:
    """Train `model` with SimCLR on `images` (N, 3, H, W) uint8; returns the `History`.

    Runs on the model's device; the images are copied there once. With `labels` and the test set, a
    weighted kNN monitor (k=200, t=0.1, on h at views.size pixels) runs every `knn_every` epochs and
    at the end. `checkpoint`: written every epoch; if it exists and `resume`, training continues from
    it (the config must be the same). `callback(history)` runs after every epoch.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}.")
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images is less than one batch of {config.batch_size}; lower batch_size.")
    dev = next(model.parameters()).device
    cuda = dev.type == "cuda"
    images = images.to(dev)
    monitor = labels is not None and test_images is not None and test_labels is not None
    optimizer = make_optimizer(model, config)
    gen = torch.Generator(device=dev).manual_seed(config.seed)
    history, epoch, batch, perm = History(), 0, 0, None
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, kind="simclr", map_location=dev)
        if state["config"] != _identity(config):
            raise CheckpointError(f"{checkpoint} was written by a run with another config:\n  {state['config']}\n"
                                  "Use a new checkpoint path for a new config, or pass resume=False to start over.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], gen)
        history = History(**state["history"])
        history.knn = [tuple(r) for r in history.knn]
        history.stopped_by_budget = False
        epoch, batch, perm = state["epoch"], state["batch"], state["perm"]
        if epoch >= config.epochs or history.annealed_early:  # the budget is not part of the identity
            print(f"{checkpoint} holds a finished run ({epoch} epochs, {history.seconds / 60:.1f} min); nothing to "
                  "train. To train longer or with another budget, use a new checkpoint path.")

    total, warmup = config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    fast = config.channels_last
    if fast:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    plot = LivePlot() if config.live_plot else None

    def save():
        if checkpoint is not None:
            saved = asdict(history)
            saved["segments"] = history.segments + [time.perf_counter() - segment_start]  # this call, so far
            save_checkpoint(checkpoint, "simclr", model=model.state_dict(), optimizer=optimizer.state_dict(),
                            epoch=epoch, batch=batch, perm=perm, history=saved, rng=rng_state(gen),
                            config=_identity(config))

    from tqdm.auto import tqdm  # lazy: picks the notebook widget or the terminal bar at call time

    bar = tqdm(total=total, initial=epoch * steps_per_epoch + batch, disable=not progress, desc="SimCLR", unit="step")
    start, segment_start = time.perf_counter() - history.seconds, time.perf_counter()
    by_time = config.anneal_to_budget and config.time_budget_min is not None
    budget_s = 60 * config.time_budget_min if config.time_budget_min is not None else math.inf
    model.train()
    pending: list[torch.Tensor] = []  # this epoch's losses, still on the device
    try:
        while epoch < config.epochs and not history.annealed_early:  # a finished run is only loaded
            if perm is None:
                perm = torch.randperm(len(images), generator=gen, device=dev)
            while batch < steps_per_epoch:
                step = epoch * steps_per_epoch + batch
                done = None  # fraction of the schedule behind us; None: count it in steps
                if by_time:  # the later of the step count and the clock decides where the cosine is
                    by_steps = (step - warmup) / max(1, total - warmup)
                    done = max(by_steps, (time.perf_counter() - start) / budget_s)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total, warmup, config.lr, done)
                x = images[perm[batch * config.batch_size:(batch + 1) * config.batch_size]]  # (B, 3, H, W) uint8
                views = torch.cat([simclr_views(x, config.views, gen), simclr_views(x, config.views, gen)])  # (2B, ...)
                if fast:
                    views = views.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda and config.amp):
                    _, z = step_model(views)                                  # (2B, proj_dim)
                loss = nt_xent(z.float(), config.temperature, impl="auto" if cuda else "torch")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                pending.append(loss.detach())  # no .item() here: a GPU would wait for every step
                history.images_seen += len(x)
                batch += 1
                bar.update(1)
                last = epoch == config.epochs - 1 and batch == steps_per_epoch
                if by_time and (time.perf_counter() - start) / budget_s >= 1.0:
                    history.annealed_early = True  # the schedule is complete: training is done, on time
                    break
                if time.perf_counter() - segment_start > budget_s and not last:
                    history.stopped_by_budget = True
                    break
            history.losses += torch.stack(pending).float().tolist() if pending else []
            pending.clear()
            if batch == steps_per_epoch:
                history.epoch_losses.append(sum(history.losses[-steps_per_epoch:]) / steps_per_epoch)
                epoch, batch, perm = epoch + 1, 0, None
            done = epoch == config.epochs or history.stopped_by_budget or history.annealed_early
            if monitor and (done or (config.knn_every and epoch % config.knn_every == 0 and batch == 0)):
                acc = _knn_check(model, config, labels, images, test_images, test_labels)
                history.knn.append((epoch + batch / steps_per_epoch, time.perf_counter() - start, acc))
            history.seconds = time.perf_counter() - start
            bar.set_postfix(loss=f"{history.epoch_losses[-1] if history.epoch_losses else history.losses[-1]:.3f}",
                            knn=f"{history.knn[-1][2]:.1%}" if history.knn else "-")
            save()
            if plot is not None:
                plot(history)
            if callback is not None:
                callback(history)
            if history.stopped_by_budget or history.annealed_early:
                break
    finally:
        bar.close()
        history.segments.append(time.perf_counter() - segment_start)
        history.seconds = time.perf_counter() - start
    if history.stopped_by_budget:
        print(f"Stopped by the time budget ({config.time_budget_min} min) at epoch {epoch} step {batch}; "
              "call again with the same checkpoint to continue.")
    return history


def plot_history(history: History, ax=None):
    """Loss per step (left) and kNN top-1 against wall-clock minutes (right). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2)) if ax is None else (ax[0].figure, ax)
    a1.plot(history.losses, lw=0.8)
    a1.set(xlabel="step", ylabel="NT-Xent loss", title="training loss")
    if history.knn:
        _, secs, acc = zip(*history.knn)
        a2.plot([s / 60 for s in secs], [100 * a for a in acc], "o-")
    a2.set(xlabel="wall-clock minutes", ylabel="kNN top-1 (%)", title="kNN monitor (k=200, t=0.1)")
    fig.tight_layout()
    return fig


class LivePlot:
    """Callback that redraws `plot_history` in a notebook output after every epoch."""

    def __call__(self, history: History) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import clear_output, display

        fig = plot_history(history)
        clear_output(wait=True)
        display(fig)
        plt.close(fig)


__all__ = ["SimCLRConfig", "PRESETS", "load_data", "build_model", "make_optimizer", "History",
           "train_simclr", "plot_history", "LivePlot"]
