"""Growth: Policy 1 (connections) and Algorithm 1 (neurons), on hand-made examples."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from nest_core.grow.connections import dense_gradients, grow_connections, select_top_dormant
from nest_core.grow.neurons import add_neuron, bridging_gradient, grow_neurons, neuron_weights
from nest_core.measures import count_params
from nest_core.models.seeds import build_seed, lenet300
from nest_core.nn.layers import MaskedLinear
from nest_core.training.trainer import TrainSpec, train_samples
from tests.conftest import toy_data


def test_select_top_dormant_exact():
    mask = torch.tensor([[True, False, False], [False, True, False]])
    grad = torch.tensor([[9.0, -0.5, 3.0], [-4.0, 8.0, 1.0]])
    new = select_top_dormant(mask, grad, 2)  # dormant |g|: 0.5, 3, 4, 1 -> picks 4 and 3
    assert new.tolist() == [[False, False, True], [True, False, False]]
    assert select_top_dormant(mask, grad, 10).sum() == 4  # capped at the dormant count


def test_dense_gradients_match_pytorch_dense_layer():
    torch.manual_seed(0)
    layer = MaskedLinear(5, 3)
    with torch.no_grad():
        layer.weight.normal_()
    layer.mask.copy_(torch.rand(3, 5) < 0.5)
    layer.enforce_mask()
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    grads = dense_gradients(layer, [(x, y)])
    dense = torch.nn.Linear(5, 3)  # the oracle: a dense layer holding the masked weights
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        dense.bias.copy_(layer.bias)
    F.cross_entropy(dense(x), y, reduction="sum").backward()
    assert torch.allclose(grads[""], dense.weight.grad, atol=1e-6)
    assert layer.weight.grad is None  # the model is left without stray gradients


def test_grow_connections_adds_top_gradient_with_descent_init():
    layer = MaskedLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, -2.0, 0.0]]))
    layer.mask.copy_(torch.tensor([[True, False, False], [False, True, False]]))
    grads = {"": torch.tensor([[0.0, 1.0, -3.0], [0.5, 0.0, 2.0]])}
    before = layer.mask.clone()
    added = grow_connections(layer, grads, fraction=0.5, birth=0.5)  # 0.5 x 2 active = 1
    assert added == {"": 1}
    assert layer.mask.tolist() == [[True, False, True], [False, True, False]]
    assert (layer.mask | before).equal(layer.mask), "growth never removes"
    # New weight = -eta * g with mean |w_new| = 0.5 * mean |W_active| = 1.0.
    assert layer.weight[0, 2].item() == 1.0


def test_algorithm1_hand_computed_2x3():
    g = torch.tensor([[0.04, -0.09, 0.01], [-0.16, 0.0, 0.25]])
    w_in, w_out = neuron_weights(g, beta=0.5, generator=torch.Generator().manual_seed(3))
    s = torch.randint(0, 2, (2,), generator=torch.Generator().manual_seed(3)) * 2 - 1
    s0, s1 = s.tolist()
    # beta*M*N = 3 pairs pass: (0,1) |G|=.09, (1,0) .16, (1,2) .25 -> sqrt .3, .4, .5
    assert torch.allclose(w_out, torch.tensor([0.3 * s0, 0.9 * s1]))
    assert torch.allclose(w_in, torch.tensor([0.4 * s1, 0.3 * s0, -0.5 * s1]))
    # Every selected product w_out[m] * w_in[n] points down the loss: sign opposite to G.
    for m, n in [(0, 1), (1, 0), (1, 2)]:
        assert (w_out[m] * w_in[n]).item() * g[m, n].item() < 0


def _trained_toy_net():
    data = toy_data(512, seed=1)
    net = build_seed(lenet300(0.05), 0.3, torch.Generator().manual_seed(0))
    train_samples(net, data, 512, TrainSpec("adam", 3e-3, 64), torch.Generator().manual_seed(0))
    return net, data


def _loss(net, x, y) -> float:
    with torch.no_grad():
        return F.cross_entropy(net(x), y).item()


def _check_descent(net, x, y, layer: int, alpha: float) -> None:
    before = _loss(net, x, y)
    grown = copy.deepcopy(net)
    added = grow_neurons(grown, layer, 1, [(x, y)], alpha=alpha, beta=0.1,
                         generator=torch.Generator().manual_seed(0))
    assert added == 1
    drop = before - _loss(grown, x, y)
    assert drop > 0, "the grown neuron must lower the loss of the batch it was grown on"
    w_in = grown.fcs[layer].weight[-1].detach()
    w_out = grown.fcs[layer + 1].weight[:, -1].detach()
    random_drops = []
    for seed in range(20):  # same magnitudes and connections, random signs
        g = torch.Generator().manual_seed(100 + seed)
        rand = copy.deepcopy(net)
        sign_in = torch.randint(0, 2, w_in.shape, generator=g) * 2 - 1
        sign_out = torch.randint(0, 2, w_out.shape, generator=g) * 2 - 1
        add_neuron(rand, layer, w_in.abs() * sign_in, w_out.abs() * sign_out)
        random_drops.append(before - _loss(rand, x, y))
    assert drop > max(random_drops)


def test_grown_neuron_lowers_batch_loss_more_than_random_toy():
    net, data = _trained_toy_net()
    for layer in (0, 1):  # toy pixels are dense, so a small birth strength avoids overshoot
        _check_descent(net, data.train.x[:256], data.train.y[:256], layer, alpha=0.01)


def test_grown_neuron_lowers_batch_loss_mnist(mnist_small):
    net = build_seed(lenet300(0.2), 0.1, torch.Generator().manual_seed(0))
    train_samples(net, mnist_small, 2000, TrainSpec("adam", 1e-3, 128),
                  torch.Generator().manual_seed(0))
    x, y = mnist_small.train.x[:1000], mnist_small.train.y[:1000]
    for layer in (0, 1):  # the default birth strength on real digits
        _check_descent(net, x, y, layer, alpha=0.3)


def test_grow_neurons_only_adds():
    net, data = _trained_toy_net()
    masks = [fc.mask.clone() for fc in net.fcs]
    params = count_params(net)
    batches = [(data.train.x[:128], data.train.y[:128])]
    added = grow_neurons(net, 1, 3, batches, 0.3, 0.1, torch.Generator().manual_seed(0))
    assert added == 3
    assert net.fcs[1].out_features == masks[1].shape[0] + 3
    assert net.fcs[2].in_features == masks[2].shape[1] + 3
    assert torch.equal(net.fcs[1].mask[: masks[1].shape[0]], masks[1])
    assert torch.equal(net.fcs[2].mask[:, : masks[2].shape[1]], masks[2])
    assert torch.equal(net.fcs[0].mask, masks[0])
    assert count_params(net) > params


def test_bridging_gradient_matches_finite_difference():
    net, data = _trained_toy_net()
    x, y = data.train.x[:32], data.train.y[:32]
    g, _ = bridging_gradient(net, 1, [(x, y)])
    # G[m, n] is dL/dw of a direct connection n (fc2 input) -> m (fc3 output): check one.
    m, n, eps = 3, 2, 1e-3

    def loss_with(delta: float) -> float:
        with torch.no_grad():
            h = torch.relu(net.fcs[0](x.flatten(1)))
            u = net.fcs[2](torch.relu(net.fcs[1](h)))
            u[:, m] += delta * h[:, n]
            return F.cross_entropy(u, y, reduction="sum").item()

    fd = (loss_with(eps) - loss_with(-eps)) / (2 * eps)
    assert abs(fd - g[m, n].item()) < 1e-2 * max(1.0, abs(fd))
