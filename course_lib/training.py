"""One training run, written once for every trainer of the kit (SimCLR, MAML, Reptile, ProtoNet, ...).

    run = TrainingRun(step, model=model, optimizer=opt, generators=[gen], steps=cfg.steps, budget_s=cfg.budget_s,
                      lr=schedule, kind="simclr", identity=config_identity(cfg), checkpoint=path)
    history = run.train()       # resumes from `path` if it holds this config's run

A trainer supplies `step(s) -> {"loss": tensor, ...}`, one optimisation step (data, forward, backward,
optimizer) whose randomness comes only from `generators`; this module does the rest, the same way for all:

- **The plan, in steps.** A run takes `steps` steps or, with a time budget, as many as fit in
  `budget_s` seconds of training. The budget is turned into a step count once, at the start of a fresh
  run: a few calibration steps are timed and then undone (weights, optimizer and random state are put
  back), and the count is stored in the checkpoint. The learning rate `lr(step, total_steps)` is then a
  pure function of the step, so a resumed run reproduces the uninterrupted one bit for bit on a CPU,
  and a slow machine takes fewer steps but still ends its schedule. Evaluations come on top of the budget.
- **One resume rule.** With `checkpoint=`, a run resumes from that file when it exists. A checkpoint
  written with another config (anything that changes the trajectory) is refused, with the fields that
  differ and what to do; a finished run is loaded as it is, and says so.
- **One checkpoint cadence.** A checkpoint is written atomically (`course_lib.checkpoint`) after the
  first step that ends `checkpoint_every_s` seconds of training after the last one, and at the end.
  A run that is interrupted (Ctrl-C, a crash, a closed laptop) loses at most that much.
- **Across ranks** (torchrun, `course_lib.distributed`) every rank calibrates the same steps and plans the
  fewest any of them measured; rank 0 writes the checkpoint and prints, and every rank resumes from it.
- **One history and one progress bar.** Per-step values stay on the device and are read in batches
  (a GPU never waits for a `.item()` per step); a non-finite loss stops the run with a clear error.
  The progress bar (`course_lib.progress`) ends complete when the run ends as planned or on purpose
  (`stop_after`), and says why when that is short of `steps`; an error or Ctrl-C ends it red.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from course_lib.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from course_lib.distributed import any_rank, is_main, min_over_ranks
from course_lib.progress import end_bar, progress_bar

StepFn = Callable[[int], Mapping[str, torch.Tensor]]  # step index -> scalar tensors, "loss" among them
FLUSH_EVERY_S = 1.0  # seconds between reads of the per-step values (and progress-bar refreshes)
CALIBRATION_STEPS = (3, 20)  # timed steps that measure the speed of a budgeted run: at least, at most
CALIBRATION_SECONDS = 5.0  # ... stopping once they took this long (after the untimed first step)


@dataclass
class History:
    """What a run produced, over all its resumed segments."""

    per_step: dict[str, list[float]] = field(default_factory=dict)  # e.g. {"loss": [...]}: one value a step
    evals: list[dict[str, float]] = field(default_factory=list)  # {"step", "seconds", metric: value} each
    total_steps: int = 0  # the plan: steps of the whole run (0 until it is fixed)
    seconds: float = 0.0  # training time so far, evaluations included, all segments
    segments: list[float] = field(default_factory=list)  # seconds of each call that trained

    @property
    def losses(self) -> list[float]:
        return self.per_step.get("loss", [])

    @property
    def step(self) -> int:
        """Steps taken so far."""
        return len(self.losses)

    @property
    def done(self) -> bool:
        return 0 < self.total_steps <= self.step

    def curve(self, metric: str) -> tuple[list[float], list[float]]:
        """(steps, values) of an evaluated metric, e.g. history.curve("knn")."""
        rows = [e for e in self.evals if metric in e]
        return [e["step"] for e in rows], [e[metric] for e in rows]


def config_identity(config, ignore: Sequence[str] = ()) -> dict[str, str]:
    """{field: repr(value)} of a dataclass config, without the fields in `ignore` (those that do not change
    the trajectory, such as how often to evaluate). Strings only, so a checkpoint loads with weights_only."""
    return {f.name: repr(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name not in ignore}


def describe_difference(saved: Mapping[str, str], current: Mapping[str, str]) -> str:
    """'temperature: 0.2 in the checkpoint, 0.1 now; ...' for the fields that differ."""
    names = sorted(set(saved) | set(current))
    return "; ".join(f"{n}: {saved.get(n, '(absent)')} in the checkpoint, {current.get(n, '(absent)')} now"
                     for n in names if saved.get(n) != current.get(n))


def plan_steps(max_steps: int, budget_s: float, seconds_per_step: float, spent_s: float) -> int:
    """Steps that fit in the budget at the measured speed, after `spent_s` seconds of calibration."""
    fit = math.floor((budget_s - spent_s) / max(seconds_per_step, 1e-9))
    return max(1, min(max_steps, fit))


class TrainingRun:
    """A training run of `step` with a plan, a history, checkpoints and a progress bar (see the module doc).

    step: one optimisation step, `step(s) -> {"loss": scalar tensor, ...}`, drawing only from `generators`.
    model, optimizer: what a checkpoint saves (with every random state) and calibration puts back.
    steps, budget_s: the plan (see `calibrate`); lr(step, total_steps): the learning rate, set before each step.
    kind, identity: the checkpoint's tag, and {field: value} strings a resume must match (`config_identity`).
    checkpoint, checkpoint_every_s: where and how often to save (None: no checkpoint).
    evaluate, evaluate_every: metrics {name: float} recorded every that many steps and at the end.
    callback(history): after each evaluation and at the end of the call. stop_after: steps in this call at most.
    """

    def __init__(self, step: StepFn, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 generators: Sequence[torch.Generator], steps: int, lr: Callable[[int, int], float],
                 kind: str, identity: Mapping[str, str] | None = None, budget_s: float | None = None,
                 checkpoint: str | Path | None = None, checkpoint_every_s: float = 60.0,
                 evaluate: Callable[[], Mapping[str, float]] | None = None, evaluate_every: int = 0,
                 callback: Callable[[History], None] | None = None, stop_after: int | None = None,
                 progress: bool = True, desc: str = "training"):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
        if budget_s is not None and not budget_s > 0:
            raise ValueError(f"budget_s must be a number of seconds > 0 (or None for no budget), got {budget_s!r}.")
        self.step_fn, self.optimizer, self.generators = step, optimizer, list(generators)
        # A torch.compile'd model's state_dict prefixes every key with "_orig_mod.": save and load the module
        # itself, so that a checkpoint resumes into the plain model too (the two share their parameters).
        self.model = getattr(model, "_orig_mod", model)
        self.max_steps, self.budget_s, self.lr, self.kind = steps, budget_s, lr, kind
        self.identity = dict(identity or {})
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every_s, self.evaluate, self.evaluate_every = checkpoint_every_s, evaluate, evaluate_every
        self.callback, self.stop_after, self.progress, self.desc = callback, stop_after, progress, desc
        self.history = History()
        self._pending: list[Mapping[str, torch.Tensor]] = []

    # -- the plan ------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "rng": rng_state(*self.generators)}

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], *self.generators)

    def _sync(self) -> None:
        device = next(self.model.parameters()).device
        if device.type == "cuda":  # timing asynchronous GPU work needs the work to be done
            torch.cuda.synchronize(device)

    def calibrate(self) -> int:
        """Fix history.total_steps: `steps`, or what fits the budget at the speed of a few undone steps."""
        if self.budget_s is None:
            return self.max_steps
        before, start, timed, step = self._state(), time.perf_counter(), [], 0
        while step < self.max_steps and len(timed) < CALIBRATION_STEPS[1]:
            self._set_lr(step, self.max_steps)
            tic = time.perf_counter()
            self.step_fn(step)
            self._sync()
            if step > 0:  # the first step pays one-time costs (compilation, caches, allocation)
                timed.append(time.perf_counter() - tic)
            step += 1
            # Across ranks (course_lib.distributed) every rank takes the same steps: each step is collective.
            if any_rank(len(timed) >= CALIBRATION_STEPS[0] and sum(timed) >= CALIBRATION_SECONDS):
                break
        self._restore(before)
        rate = sorted(timed)[len(timed) // 2] if timed else time.perf_counter() - start
        return min_over_ranks(plan_steps(self.max_steps, self.budget_s, rate, time.perf_counter() - start))

    def _set_lr(self, step: int, total: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(step, total)

    # -- resume and save -----------------------------------------------------------------------------
    def resume(self) -> bool:
        """Load the checkpoint if there is one (refusing another config's); returns whether it was loaded."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        # On the CPU: load_state_dict copies weights to where they live and moves the optimizer's state next to
        # its parameters, except Adam's step counts, which belong on the CPU (on a GPU each read would sync).
        state = load_checkpoint(self.checkpoint, kind=self.kind, map_location="cpu")
        saved = state.get("config")
        if saved != self.identity:
            difference = describe_difference(saved, self.identity) if isinstance(saved, dict) else "no config saved"
            raise CheckpointError(
                f"{self.checkpoint} holds a {self.kind} run with another config ({difference}). To continue that "
                "run, use its config; to start a new one, choose another checkpoint path or delete the file.")
        try:
            self._restore(state)
        except CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError) as exc:  # e.g. a network of another width
            raise CheckpointError(
                f"{self.checkpoint} does not fit this model or optimizer ({' '.join(str(exc).split())[:300]}). "
                "It was written for another network: choose another checkpoint path or delete the file.") from exc
        self.history = History(**state["history"])
        return True

    def save(self) -> None:
        if self.checkpoint is not None and is_main():   # across ranks, rank 0 writes and every rank resumes
            save_checkpoint(self.checkpoint, self.kind, config=self.identity, model=self.model.state_dict(),
                            optimizer=self.optimizer.state_dict(), rng=rng_state(*self.generators),
                            history=asdict(self.history))

    def _flush(self) -> None:
        """Read the per-step values kept on the device into the history; stop on a non-finite loss."""
        if not self._pending:
            return
        first = self.history.step
        for key in self._pending[0]:
            values = torch.stack([p[key].detach().float() for p in self._pending]).tolist()
            self.history.per_step.setdefault(key, []).extend(values)
        self._pending.clear()
        bad = next((i for i, v in enumerate(self.history.losses[first:]) if not math.isfinite(v)), None)
        if bad is not None:
            at = first + bad
            raise FloatingPointError(
                f"the {self.desc} loss became {self.history.losses[at]} at step {at}: training diverged. "
                "Lower the learning rate and start a new run (another checkpoint path, or delete the old file: a "
                "checkpoint resumes only the config that wrote it).")

    # -- the loop ------------------------------------------------------------------------------------
    def train(self) -> History:
        """Train to the end of the plan (or `stop_after` steps of this call); returns the history."""
        resumed = self.resume()
        h = self.history
        if resumed and h.done:
            if is_main():   # across ranks, one says it
                print(f"{self.checkpoint} holds a finished {self.kind} run ({h.step} steps, {h.seconds / 60:.1f} min "
                      "of training): nothing to train. To train again, choose another checkpoint path or delete the file.")
            return h
        if resumed and is_main():
            print(f"resumed {self.checkpoint} at step {h.step} of {h.total_steps} ({h.seconds:.0f} s of training so far)")
        else:
            h.total_steps = self.calibrate()
        last = h.total_steps if self.stop_after is None else min(h.total_steps, h.step + self.stop_after)
        bar = progress_bar(h.total_steps, h.step, self.progress, self.desc)
        try:
            self._loop(last, bar)
        except BaseException:  # an error or Ctrl-C, even after the last update: the bar must show it
            end_bar(bar, f"interrupted at step {h.step + len(self._pending)} of {h.total_steps}")
            raise
        end_bar(bar)
        note = self._ending() if self.progress else None
        if note:
            print(note)
        return h

    def _ending(self) -> str | None:
        """Why this call ended where it did, unless it simply took the `steps` asked for."""
        h = self.history
        if h.step < h.total_steps:
            resume = "train again with the same checkpoint to resume" if self.checkpoint else "no checkpoint to resume"
            return (f"stopped at step {h.step} of {h.total_steps}: stop_after={self.stop_after} steps in this call; "
                    f"{resume}")
        if self.budget_s is not None and h.total_steps < self.max_steps:
            return (f"ended at step {h.step}, the end of its plan: the time budget of {self.budget_s:g} s fits "
                    f"{h.total_steps} of the {self.max_steps} steps asked for (measured at the start of the run)")
        return None

    def _loop(self, last: int, bar) -> None:
        h = self.history
        start, segment_start = time.perf_counter() - h.seconds, time.perf_counter()
        saved_at = flushed_at = time.perf_counter()
        h.segments.append(0.0)
        for step in range(h.step, last):
            self._set_lr(step, h.total_steps)
            self._pending.append(self.step_fn(step))
            now = time.perf_counter()
            finished = step + 1 == last
            evaluate = self.evaluate is not None and (step + 1 == h.total_steps or (
                self.evaluate_every and (step + 1) % self.evaluate_every == 0))
            save = finished or now - saved_at >= self.checkpoint_every_s
            if not (evaluate or save or now - flushed_at >= FLUSH_EVERY_S):
                continue
            # The bar moves here, once a second at most: in Jupyter each redraw is a widget message, and
            # one per step cost 30% of a MAML smoke run's time under nbconvert.
            bar.update(len(self._pending))
            self._flush()
            if evaluate:
                h.evals.append({"step": step + 1, "seconds": time.perf_counter() - start, **self.evaluate()})
            h.seconds, h.segments[-1] = time.perf_counter() - start, time.perf_counter() - segment_start
            bar.set_postfix({"loss": f"{h.losses[-1]:.3f}",
                             **{k: f"{v:.3g}" for k, v in (h.evals[-1].items() if h.evals else ()) if k not in
                                ("step", "seconds")}})
            if save:
                self.save()
                saved_at = time.perf_counter()
            if self.callback is not None and (evaluate or finished):
                self.callback(h)
            flushed_at = time.perf_counter()


__all__ = ["History", "TrainingRun", "config_identity", "describe_difference", "plan_steps", "StepFn"]
