"""Pruning-only baselines that NeST (Dai, Yin & Jha 2017, Section 4) is compared with.

Each is a ``Method`` value (how it starts, what a pruning iteration removes, which stages it
skips) registered by name in ``nest_core.synthesis.methods``, so it runs in NeST's own loop
and shares its data, training, masks, measures, history, checkpoints and result row:

- ``magnitude``: Han et al. 2015, iterative magnitude pruning with retraining;
- ``trimming``: Hu et al. 2016, Network Trimming by the neurons' APoZ;
- ``adaptive``: Lu et al. 2023 (TPAMI), cold-start search plus learned pruning thresholds.

They start from the dense network of the seed's widths (``Method.dense_start``, see ``dense``).

>>> cfg = SynthesisConfig.create(model="lenet300", ratio=1.0, method="trimming")
>>> result = make_synthesis(cfg, data).run()  # doctest: +SKIP
"""
