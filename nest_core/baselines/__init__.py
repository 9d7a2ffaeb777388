"""Pruning-only baselines that NeST (Dai, Yin & Jha 2017, Section 4) is compared with.

Each is a ``Synthesis`` subclass registered by name in ``nest_core.synthesis.methods``, so
it shares the loop, data, training, masks, measures, history, checkpoints and result row with NeST:

- ``magnitude``: Han et al. 2015, iterative magnitude pruning with retraining;
- ``trimming``: Hu et al. 2016, Network Trimming by the neurons' APoZ;
- ``adaptive``: Lu et al. 2023 (TPAMI), cold-start search plus learned pruning thresholds.

They start from the dense network of the seed's widths (see ``dense.DenseStart``).

>>> cfg = SynthesisConfig.create(model="lenet300", ratio=1.0, method="trimming")
>>> result = make_synthesis(cfg, data).run()  # doctest: +SKIP
"""
