"""Dead units leave the network during pruning (``compact.drop_dead_units``): the function
and every kept entry's optimizer state stay, so training goes on as if they were there."""

from __future__ import annotations

import copy

import pytest
import torch

from nest_core.measures import count_params
from nest_core.models.seeds import build_seed, lenet5, lenet300
from nest_core.prune.dead_units import prune_dead_units
from nest_core.synthesis.compact import drop_dead_units
from nest_core.training.trainer import Trainer, TrainSpec
from tests.conftest import toy_data


def _with_dead_units(arch, seed: int = 0):
    net = build_seed(arch, 0.5, torch.Generator().manual_seed(seed))
    groups = net.unit_groups()
    with torch.no_grad():  # units 0 and 2 of the first group lose their inputs
        groups[0].layer.mask[[0, 2]] = False
        groups[0].layer.enforce_mask()
    prune_dead_units(net, torch.rand(32, *net.input_shape), 0.0)
    return net


@pytest.mark.parametrize("arch", [lenet300(0.05), lenet5(0.2)], ids=["mlp", "conv"])
def test_drop_dead_units_keeps_the_function_and_the_optimizer_state(arch):
    data = toy_data(128)
    net = _with_dead_units(arch)
    twin = copy.deepcopy(net)
    trainer = Trainer(net, data, TrainSpec(lr=1e-2, batch_size=32), torch.Generator())
    trainer.train(64)  # the optimizer has moments now
    twin.load_state_dict(net.state_dict())
    twin_trainer = Trainer(twin, data, TrainSpec(lr=1e-2, batch_size=32), torch.Generator())
    twin_trainer.restore(twin, trainer.state())
    alive = [int((g.has_inputs() & g.has_outputs()).sum()) for g in net.unit_groups()]
    assert all(not (g.has_inputs() ^ g.has_outputs()).any() for g in net.unit_groups())
    assert alive[0] <= net.unit_groups()[0].size - 2
    params = count_params(net)
    index = drop_dead_units(net)
    assert index is not None and [g.size for g in net.unit_groups()] == alive
    assert count_params(net) == params  # only dead units left: no connection lost
    x = torch.rand(16, *net.input_shape)
    net.eval(), twin.eval()
    assert torch.allclose(net(x), twin(x), atol=1e-6)
    trainer.compacted(net, index)
    old = dict(twin.named_parameters())
    for name, p in net.named_parameters():  # every kept entry keeps its moments
        for key in ("exp_avg", "exp_avg_sq"):
            moved = trainer.opt.state[p][key]
            assert moved.shape == p.shape
            kept = twin_trainer.opt.state[old[name]][key].flatten()[index[name]]
            assert torch.equal(moved.flatten(), kept), (name, key)
    # one more step on the same batch: the kept weights move as the twin's (torch as oracle)
    batch = (x, torch.randint(0, 10, (16,)))
    for t in (trainer, twin_trainer):
        t.data = _OneBatch(batch)
        t.generator = torch.Generator().manual_seed(0)
        t.train(16, 1e-2)
    after = dict(twin.named_parameters())
    for name, p in net.named_parameters():
        assert torch.allclose(p.detach().flatten(), after[name].detach().flatten()[index[name]],
                              atol=1e-6), name
    assert drop_dead_units(net) is None  # nothing dead any more


class _OneBatch:
    def __init__(self, batch):
        self.batch = batch

    def batches(self, batch_size, generator, distortion=None):
        yield self.batch
