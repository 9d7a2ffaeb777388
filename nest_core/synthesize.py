"""The NeST synthesis loop (Section 3 of the paper): train a sparse seed, grow it until the
validation error reaches the target (Policies 1-3), then prune it (Policy 4) for as long as
retraining holds the error. Between iterations the whole state is a checkpoint, so an
interrupted synthesis resumes where it stopped.

>>> synth = Synthesis(SynthesisConfig.create(model="lenet300", ratio=0.4, budget="smoke"), data)
>>> result = synth.run()
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from nest_core.config import SynthesisConfig
from nest_core.data import AffineDistortion, ImageData
from nest_core.export import areas, rebuild
from nest_core.grow_connections import dense_gradients, grow_connections
from nest_core.grow_maps import grow_feature_maps
from nest_core.grow_neurons import grow_neurons
from nest_core.history import Event
from nest_core.layers import masked_layers
from nest_core.measures import count_params
from nest_core.models import Net, build_seed, seed_architecture
from nest_core.partial_area import partial_area_step
from nest_core.prune import magnitude_prune, prune_dead_units
from nest_core.result import build_result
from nest_core.train import error_rate, grad_batches, train_samples


def display_names(net: Net) -> dict[str, str]:
    """Module name -> the layer's name in tables: 'convs.0' -> 'conv1', 'fcs.2' -> 'fc3'
    (the paper's names), 'blocks.3.conv1' -> 'layer2.0.conv1' (torchvision's ResNet)."""
    table = {id(layer): name for name, layer, _ in net.layer_bns()}
    return {name: table[id(layer)] for name, layer in masked_layers(net)}


StepCallback = Callable[[dict, "Synthesis"], None]
STAGES = ("warmup", "growth", "pruning", "partial_area", "final", "done")


class Synthesis:
    """One synthesis run: its network, stage, counters and history."""

    def __init__(self, cfg: SynthesisConfig, data: ImageData) -> None:
        self.cfg, self.data, self.device = cfg, data, data.device
        self.generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        arch = seed_architecture(cfg.model, cfg.ratio, cfg.batch_norm, data.image_shape,
                                 data.num_classes)
        self.net: Net = build_seed(arch, cfg.density, self.generator).to(self.device)
        self.stage, self.step = "warmup", 0
        self.seconds = {"growth": 0.0, "pruning": 0.0}
        self.samples = {"growth": 0, "pruning": 0}
        self.history: list[Event] = []
        self.val_error = float("nan")
        self.post_growth: dict = {}
        self.prune_fraction = cfg.prune_fraction
        self.reference = float("nan")  # validation error pruning must hold
        self.distortion = AffineDistortion() if cfg.distortion else None

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def budget(self):
        return self.cfg.budget_spec

    def _epochs(self, epochs: float) -> int:
        return int(round(epochs * len(self.data.train)))

    def _train(self, epochs: float, kind: str, lr_scale: float = 1.0) -> None:
        seen = train_samples(self.net, self.data, self._epochs(epochs), self.cfg.optimizer,
                             self.cfg.lr * lr_scale, self.cfg.batch_size, self.generator,
                             self.distortion)
        self.samples[kind] += seen

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
        self._train(self.budget.warmup_epochs, "growth")
        self._evaluate()
        self._log("warmup")
        self.stage = "growth"

    def _grow_once(self) -> None:
        """One growth iteration: connections (Policy 1), neurons (Algorithm 1), training."""
        cfg = self.cfg
        batches = list(grad_batches(self.data, cfg.grad_samples, 1000, self.generator))
        self.samples["growth"] += sum(x.shape[0] for x, _ in batches)
        grads = dense_gradients(self.net, batches)
        few = batches[: max(1, cfg.neuron_grad_samples // 1000)]
        few_samples = sum(x.shape[0] for x, _ in few)
        names = display_names(self.net)
        for name, n in grow_connections(self.net, grads, cfg.connection_growth,
                                        cfg.connection_birth).items():
            self._log("grow_connections", names[name], added=n)
        if cfg.neurons_per_step > 0:
            for j in range(len(self.net.fcs) - 1):
                n = grow_neurons(self.net, j, cfg.neurons_per_step, few, cfg.alpha,
                                 cfg.beta, self.generator)
                self.samples["growth"] += n * few_samples
                self._log("grow_neurons", f"fc{j + 1}", added=n)
        if cfg.maps_per_step > 0:
            for group in [g for g in self.net.unit_groups() if g.is_conv]:
                for event in grow_feature_maps(self.net, group, cfg.maps_per_step, few[0],
                                               cfg.map_candidates, cfg.density, cfg.alpha,
                                               self.generator):
                    self.samples["growth"] += few[0][0].shape[0] * (cfg.map_candidates + 1)
                    self._log("grow_maps", group.name, added=event["added"], detail=(
                        f"loss drop chosen {event['chosen_drop']:.4g}, "
                        f"random {event['random_drop']:.4g}"))
        self._train(self.budget.growth_epochs, "growth")
        self._evaluate()
        self._log("train")

    def _stalled(self) -> bool:
        """True when the last ``growth_patience`` growth steps found no better val error."""
        patience = self.cfg.growth_patience
        errors = [e.val_error for e in self.history if e.phase in ("warmup", "train")]
        if patience == 0 or len(errors) <= patience:
            return False
        return min(errors[-patience:]) >= min(errors[:-patience])

    def _growth(self) -> None:
        if (self.val_error <= self.cfg.target or self.step >= self.budget.growth_steps
                or self._stalled()):
            reached = self.val_error <= self.cfg.target
            self.post_growth = {"params": count_params(self.net), "val_error": self.val_error,
                                "target_reached": reached,
                                "architecture": self.net.architecture().to_dict()}
            self.reference = (self.cfg.target if reached else self.val_error)
            self.reference += self.cfg.prune_tolerance
            self.stage, self.step = "pruning", 0
            return
        self.step += 1
        self._grow_once()

    def _pruning(self) -> None:
        self._prune_iteration(self._prune_step)

    def _prune_step(self) -> None:
        """Policy 4: magnitude pruning, then dead units, then retraining."""
        for name, n in magnitude_prune(self.net, self.prune_fraction,
                                       flops=self.cfg.prune_flops).items():
            self._log("prune", name, removed=n)
        for name, cut in prune_dead_units(self.net, self.data.val.x,
                                          self.cfg.neuron_threshold).items():
            self._log("prune_neurons", name, removed=cut)
        self._train(self.budget.retrain_epochs, "pruning", lr_scale=0.5)

    def _prune_iteration(self, prune: Callable[[], None]) -> None:
        """One pruning iteration: ``prune()`` removes and retrains; when the validation error
        then exceeds the reference the step is undone and ``prune_fraction`` halved. Ends at
        the step budget or once the fraction falls below ``min_prune_fraction``."""
        if (self.step >= self.budget.prune_steps
                or self.prune_fraction < self.cfg.min_prune_fraction):
            self.stage, self.step = "partial_area", 0
            return
        self.step += 1
        good, before = copy.deepcopy(self.net), count_params(self.net)
        prune()
        self._evaluate()
        self._log("retrain")
        if self.val_error > self.reference:  # retraining could not hold the error: roll back
            detail = (f"fraction {self.prune_fraction:.3g} gave val error {self.val_error:.4f}"
                      f" > {self.reference:.4f}; restored, fraction halved")
            self.net = good
            self._evaluate()
            self._log("rollback", added=before - count_params(self.net), detail=detail)
            self.prune_fraction /= 2

    def _partial_area(self) -> None:
        """Algorithm 2 on conv layers: mask low-contribution output positions, retrain, and
        keep the step only while validation error holds the reference."""
        if not self.net.convs or self.step >= self.budget.area_steps:
            self.stage, self.step = "final", 0
            return
        self.step += 1
        good = copy.deepcopy(self.net)
        x = next(grad_batches(self.data, 1000, 1000, self.generator))[0]
        masked = partial_area_step(self.net, x, self.cfg.area_gamma)
        self._train(self.budget.retrain_epochs, "pruning", lr_scale=0.5)
        if self._evaluate() <= self.reference:
            for name, n in masked.items():
                self._log("partial_area", name, removed=n)
        else:
            self._log("partial_area", "", detail=f"rejected: val error {self.val_error:.4f}")
            self.net = good
            self._evaluate()
            self.step = self.budget.area_steps  # stop: areas only shrink from here

    def _final(self) -> None:
        before, good = self.val_error, copy.deepcopy(self.net)
        self._train(self.budget.final_epochs, "pruning", lr_scale=0.5)
        if self._evaluate() > max(before, self.reference):
            self.net, self.val_error = good, before
        self._log("final")
        self.stage = "done"

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
        return {
            "config_id": self.cfg.config_id, "stage": self.stage, "step": self.step,
            "architecture": self.net.architecture().to_dict(),
            "areas": areas(self.net),
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "generator": self.generator.get_state(),
            "seconds": dict(self.seconds), "samples": dict(self.samples),
            "history": [e.to_dict() for e in self.history], "val_error": self.val_error,
            "post_growth": self.post_growth, "prune_fraction": self.prune_fraction,
            "reference": self.reference,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config_id"] != self.cfg.config_id:
            raise ValueError(f"checkpoint is of config {state['config_id']}, "
                             f"not {self.cfg.config_id}")
        self.net = rebuild(state["architecture"], state["model"], state["areas"]).to(self.device)
        self.generator.set_state(state["generator"])
        self.history = [Event(**e) for e in state["history"]]
        for key in ("stage", "step", "seconds", "samples", "val_error", "post_growth",
                    "prune_fraction", "reference"):
            setattr(self, key, state[key])


def synthesize(cfg: SynthesisConfig, data: ImageData, on_step: StepCallback | None = None,
               resume: dict | None = None) -> tuple[dict, Net]:
    """Run a synthesis of ``cfg.method`` (resuming from a ``Synthesis.state_dict()`` when
    given); returns the result dict (what result.json holds) and the final masked network."""
    from nest_core.methods import make_synthesis  # methods imports this module

    synth = make_synthesis(cfg, data)
    if resume is not None:
        synth.load_state_dict(resume)
    result = synth.run(on_step)
    return result, synth.net
