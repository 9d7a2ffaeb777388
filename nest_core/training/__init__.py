"""Training: one ``Trainer`` and loop per run (``trainer``), optimizer state that follows
growth and pruning (``optim_state``) and the optional weight average (``weight_average``)."""
