"""Magnitude pruning baseline: Han, Pool, Tran & Dally 2015, "Learning both Weights and
Connections for Efficient Neural Networks" (Section 3: train, prune, retrain, iterate).

The dense network is trained (``dense.dense_training``), then NeST's own pruning stage runs on it:
each iteration removes the smallest-magnitude share ``prune_fraction`` of every layer's
active connections, cuts neurons left without inputs or outputs, and retrains at half the
learning rate; a step that cannot hold the reference error is undone and the share halved.
Assumed: Han et al. set each layer's threshold as a quality parameter times the layer's
weight std and tune it by hand; a per-layer share halved on failure stands in for that, and
their L2 regularisation and dropout-rate adjustment are left out (no other method has them).

>>> cfg = SynthesisConfig.create(model="lenet300", ratio=1.0, method="magnitude")
"""

from __future__ import annotations

from nest_core.baselines.dense import dense_training
from nest_core.synthesis.methods import Method
from nest_core.synthesis.pruning_stage import prune_step

# Dense training, then NeST's own pruning iterations (Policy 4) until the error is not held
MAGNITUDE = Method("magnitude", start=dense_training, prune_step=prune_step, dense_start=True,
                   partial_area=False)
