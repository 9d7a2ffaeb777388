"""The NeST synthesis loop (Section 3 of the paper): train a sparse seed, grow it until the
validation error reaches the target (Policies 1-3), then prune it (Policy 4) for as long as
retraining holds the error. Between iterations the whole state is a checkpoint, so an
interrupted synthesis resumes where it stopped. The pruning-only baselines run in the same
loop: a ``methods.Method`` value says how a run starts, what a pruning iteration removes and
which stages it skips.

>>> synth = Synthesis(SynthesisConfig.create(model="lenet300", ratio=0.4, budget="smoke"), data)
>>> result = synth.run()
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from nest_core.config import SynthesisConfig
from nest_core.data import AffineDistortion, ImageData
from nest_core.measures import count_params
from nest_core.models.seeds import Net, build_seed, seed_architecture
from nest_core.synthesis import checkpoint, gradual, growth_stage, pruning_stage
from nest_core.synthesis.history import Event
from nest_core.synthesis.methods import Method, method_named
from nest_core.synthesis.pruning_stage import cosine
from nest_core.synthesis.result import build_result
from nest_core.training.trainer import Trainer, TrainSpec, error_rate
from nest_core.training.weight_average import WeightAverage

StepCallback = Callable[[dict, "Synthesis"], None]
STAGES = ("warmup", "growth", "pruning", "final", "partial_area", "done")


class Synthesis:
    """One synthesis run of ``cfg.method``: its network, stage, counters and history."""

    def __init__(self, cfg: SynthesisConfig, data: ImageData) -> None:
        self.cfg, self.data, self.device = cfg, data, data.device
        self.method: Method = method_named(cfg.method)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        arch = seed_architecture(cfg.model, cfg.ratio, cfg.batch_norm, data.image_shape,
                                 data.num_classes)
        self.net: Net = build_seed(arch, cfg.density, self.generator).to(self.device)
        if self.method.dense_start:  # same generator state: never depends on cfg.density
            self.generator.manual_seed(cfg.seed)
            self.net = build_seed(arch, 1.0, self.generator).to(self.device)
        self.teacher: Net | None = None  # a method that distils sets one
        self.stage, self.step = "warmup", 0
        self.seconds = {"growth": 0.0, "pruning": 0.0}
        self.samples = {"growth": 0, "pruning": 0}
        self.history: list[Event] = []
        self.val_error = float("nan")
        self.post_growth: dict = {}
        self.prune_fraction = cfg.prune_fraction
        self.reference = float("nan")  # validation error pruning must hold
        self.within: tuple | None = None  # (net, optimizer state, val error): smallest within
        self.candidates: list[tuple] = []  # smaller ones above the reference, within the slack
        self.lr_scale = 1.0  # the share of cfg.lr the last training ended at
        self.distortion = AffineDistortion() if cfg.distortion else None
        self.spec = TrainSpec(cfg.optimizer, cfg.lr, cfg.batch_size, self.distortion, cfg.amp)
        self.trainer = Trainer(self.net, data, self.spec, self.generator)
        self.averages = {kind: WeightAverage(decay) if decay else None for kind, decay in
                         (("growth", cfg.growth_average), ("pruning", cfg.prune_average))}
        self.averaging: WeightAverage | None = None  # the average training updates now

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def budget(self):
        return self.cfg.budget_spec

    def _epochs(self, epochs: float) -> int:
        return int(round(epochs * len(self.data.train)))

    def _train(self, epochs: float, kind: str, lr_scale: float | tuple = 1.0) -> None:
        """Train ``epochs`` with the run's optimizer at ``cfg.lr`` times ``lr_scale`` (a
        constant, or (start, end) of a half-cosine over the call), unless the method trains
        itself (``Method.train``); pruning's training sees undistorted images unless
        ``prune_distortion``."""
        if self.method.train is not None and self.method.train(self, epochs, kind, lr_scale):
            return
        if self.trainer.model is not self.net:  # a method replaced the network outright
            self.trainer = Trainer(self.net, self.data, self.spec, self.generator)
        lr = (tuple(self.cfg.lr * s for s in lr_scale) if isinstance(lr_scale, tuple)
              else self.cfg.lr * lr_scale)
        self.lr_scale = lr_scale[-1] if isinstance(lr_scale, tuple) else lr_scale
        after = self.averaging.update if self.averaging is not None else None
        self.samples[kind] += self.trainer.train(self._epochs(epochs), lr, after_step=after,
                                                 distort=self.distorts(kind))

    def distorts(self, kind: str) -> bool:
        """Whether ``kind``'s training ("growth" or "pruning") sees distorted images: growth
        does (when ``cfg.distortion``), pruning and fine-tuning only with
        ``prune_distortion``."""
        return kind == "growth" or self.cfg.prune_distortion

    def spec_for(self, kind: str) -> TrainSpec:
        """The training spec of ``kind`` for a method that trains itself (``Method.train``)."""
        return self.spec if self.distorts(kind) else replace(self.spec, distortion=None)

    def _changed(self) -> None:
        """The network's structure or masks changed: the optimizer follows it (or, without
        ``keep_optimizer``, a fresh one starts, as before the synthesis-quality issue)."""
        if not self.cfg.keep_optimizer:
            self.trainer = Trainer(self.net, self.data, self.spec, self.generator)
            return
        self.trainer.sync(self.net)

    def _train_until(self, max_epochs: float, kind: str, done: Callable[[float], bool],
                     lr_scale: float | tuple[float, float] | Callable = 1.0,
                     plateau: bool = True) -> bool:
        """Train in chunks of ``cfg.eval_epochs``, evaluating after each, until
        ``done(val_error)`` (True is returned), ``max_epochs`` are spent or, with ``plateau``,
        the validation error has not improved for ``cfg.plateau_patience`` chunks (False).
        ``lr_scale``: a constant share of ``cfg.lr``, (start, end) of a half-cosine over
        ``max_epochs`` (each chunk gets its piece of it), or ``f(chunk_epochs) -> (start,
        end)`` for a schedule that spans the whole phase."""
        self.averaging = self.averages[kind]
        if self.averaging is not None:
            self.averaging.reset(self.net)
        try:
            return self._train_chunks(max_epochs, kind, done, lr_scale, plateau)
        finally:
            self.averaging = None

    def _train_chunks(self, max_epochs: float, kind: str, done: Callable[[float], bool],
                      lr_scale: float | tuple[float, float] | Callable, plateau: bool) -> bool:
        chunk = min(self.cfg.eval_epochs, max_epochs) if max_epochs > 0 else 0
        spent, best, waited, last = 0.0, float("inf"), 0, None
        while chunk > 0 and spent < max_epochs - 1e-9:
            step = min(chunk, max_epochs - spent)
            lr = lr_scale(step) if callable(lr_scale) else lr_scale
            if isinstance(lr_scale, tuple):
                lr = (cosine(*lr_scale, spent / max_epochs),
                      cosine(*lr_scale, (spent + step) / max_epochs))
            self._train(step, kind, lr)
            spent += step
            err = self._evaluate_averaged() if self.averaging is not None else self._evaluate()
            last = done(err)  # (asked once per check: a test may count checks)
            if last:
                return True
            if err < best:
                best, waited = err, 0
            else:
                waited += 1
                if plateau and waited >= self.cfg.plateau_patience:
                    break
        return done(self.val_error) if last is None else last

    def _log(self, phase: str, layer: str = "", added: int = 0, removed: int = 0,
             detail: str = "") -> None:
        self.history.append(Event(
            phase=phase, step=self.step, layer=layer, added=added, removed=removed,
            params=count_params(self.net), val_error=self.val_error,
            seconds=sum(self.seconds.values()), samples=sum(self.samples.values()),
            detail=detail))

    def _evaluate(self) -> float:
        self.val_error = error_rate(self.net, self.data.val)
        return self.val_error

    def _evaluate_averaged(self) -> float:
        """The lower validation error of the network and of its weight average; the
        network keeps those weights."""
        self.val_error = self.averaging.best_of(self.net, self._evaluate(),
                                              lambda: error_rate(self.net, self.data.val))
        return self.val_error

    def report(self) -> dict:
        """Every objective, as of now (what a sweep reports after each iteration)."""
        params = count_params(self.net)
        return {
            "stage": self.stage, "step": self.step, "params": params,
            "val_error": self.val_error,
            "growth_seconds": self.seconds["growth"], "growth_samples": self.samples["growth"],
            "pruning_seconds": self.seconds["pruning"],
            "pruning_samples": self.samples["pruning"],
            "post_growth_params": self.post_growth.get("params", params),
            "final_params": params,
            "target_reached": bool(self.post_growth.get("target_reached",
                                                        self.val_error <= self.cfg.target)),
        }

    # ---- stages ------------------------------------------------------------------------
    def _warmup(self) -> None:
        self.method.start(self)

    def _phase_lr(self, epochs: float) -> tuple[float, float]:
        """The growth phase's one schedule ("phase"): a half-cosine from lr to lr/20 over the
        growth budget (warm-up plus every growth step's maximum), read off the samples spent,
        so each growth step continues the decay instead of restarting it."""
        b = self.budget
        total = max(1, self._epochs(b.warmup_epochs + b.growth_steps * b.growth_epochs))
        t0 = self.samples["growth"] / total
        return cosine(1.0, 0.05, t0), cosine(1.0, 0.05, t0 + self._epochs(epochs) / total)

    def _gap(self) -> float:
        """How far growth still has to go, in (0, 1]: (val error - target) / target, capped
        at 1. Growth amounts scale with it, so steps shrink as the target nears."""
        target = self.cfg.target
        if not self.cfg.growth_decay:
            return 1.0
        return min(1.0, max(0.05, (self.val_error - target) / max(target, 1e-9)))

    def _growth(self) -> None:
        if (growth_stage.reached(self) or self.step >= self.budget.growth_steps
                or growth_stage.stalled(self)):
            growth_stage.end_growth(self)
            return
        self.step += 1
        growth_stage.grow_step(self)

    def _pruning(self) -> None:
        iteration = (gradual.gradual_iteration if self.cfg.prune_schedule == "gradual"
                     else pruning_stage.prune_iteration)
        iteration(self, lambda: self.method.prune_step(self))

    def pruning_rate(self) -> float:
        """The share of ``cfg.lr`` pruning and fine-tuning train at: ``prune_lr``, but at
        most ``prune_lr_cap`` times the rate the network was last trained at before pruning
        began. A network that settled at a low rate and is retrained at a much higher one
        loses more than the step pruned (LeNet-5 from growth's floor, lr/20, at 0.3 x lr:
        every step rolled back), while a rate close to the settled one prunes less per
        sample (LeNet-300-100, 3 seeds: cap 1 ended 2.5x, cap 2 1.4x larger than no cap,
        the default)."""
        lr, cap = self.cfg.prune_lr, self.cfg.prune_lr_cap
        if cap > 0:
            lr = min(lr, cap * self.post_growth.get("lr_scale", lr))
        return lr

    def _prune_lr(self) -> float | tuple[float, float]:
        """Retraining after a pruning step: constant ``pruning_rate()`` (stopping on a
        plateau), or a half-cosine from it to a twentieth over ``retrain_epochs``."""
        lr = self.pruning_rate()
        return (lr, lr / 20) if self.cfg.prune_schedule == "cosine" else lr

    def _keep_within(self) -> None:
        """Remember the current network as the smallest one within the reference so far."""
        if self.within is None or count_params(self.net) < count_params(self.within[0]):
            self.within = (copy.deepcopy(self.net), self.trainer.snapshot(), self.val_error)
            self.candidates = []

    def _partial_area(self) -> None:
        if not self.method.partial_area:  # Algorithm 2 is NeST's, not the baselines'
            self.stage, self.step = "done", 0
            return
        pruning_stage.partial_area(self)

    def _final(self) -> None:
        pruning_stage.final(self)

    def advance(self) -> None:
        """Run one iteration of the current stage, timing it against its phase."""
        kind = "growth" if self.stage in ("warmup", "growth") else "pruning"
        start = time.perf_counter()
        getattr(self, f"_{self.stage}")()
        self.seconds[kind] += time.perf_counter() - start

    def run(self, on_step: StepCallback | None = None) -> dict:
        """Run to the end; ``on_step(report, self)`` is called after every iteration."""
        while self.stage != "done":
            self.advance()
            if on_step is not None:
                on_step(self.report(), self)
        return build_result(self)

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume; loads with ``torch.load(weights_only=True)``."""
        return checkpoint.state_of(self)

    def load_state_dict(self, state: dict) -> None:
        checkpoint.load_state(self, state)


def make_synthesis(cfg: SynthesisConfig, data: ImageData) -> Synthesis:
    """A ready-to-run synthesis of ``cfg.method``."""
    return Synthesis(cfg, data)


def synthesize(cfg: SynthesisConfig, data: ImageData, on_step: StepCallback | None = None,
               resume: dict | None = None) -> tuple[dict, Net]:
    """Run a synthesis of ``cfg.method`` (resuming from a ``Synthesis.state_dict()`` when
    given); returns the result dict (what result.json holds) and the final masked network."""
    synth = Synthesis(cfg, data)
    if resume is not None:
        synth.load_state_dict(resume)
    result = synth.run(on_step)
    return result, synth.net
