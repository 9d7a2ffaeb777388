"""One synthesis: the stage machine (``loop``), its growth and pruning iterations
(``growth_stage``, ``pruning_stage``), the methods by name (``methods``), the result,
history, resumable checkpoint and compact model file."""
