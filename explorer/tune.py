"""The Ray side of a sweep: the Tuner that runs ``trial.run_trial`` over the experiment's
configs (a grid, or an Optuna multi-objective search), on the embedded node or a cluster,
and restores an interrupted experiment. The driver prints one line per finished trial and
an estimate of the time left (``TrialLines``).

>>> exp = prepare(SweepOptions(study="lenet5", budget="smoke"))  # doctest: +SKIP
>>> run_tune(exp, restore=False)  # trials write <exp>/trials/<id>/
"""

from __future__ import annotations

import json
from typing import Any

from explorer.cluster import check_nodes, start_ray
from explorer.experiment import RAY_NAME, Experiment
from explorer.progress import TrialLines
from explorer.search_space import Range
from explorer.studies import varying
from explorer.trial import TrialContext, run_trial

PROGRESS_METRICS = {"stage": "stage", "step": "step", "params": "params",
                    "val_error": "val_error", "growth_seconds": "growth_s", "status": "outcome"}


def param_space(exp: Experiment) -> dict[str, Any]:
    """Ray's param space: grid_search (or tune.choice for optuna) over the varying keys."""
    from ray import tune

    space: dict[str, Any] = {}
    ranges = exp.plan.space.ranges if exp.search == "optuna" else {}  # continuous keys
    for key in exp.points[0]:
        values = list({json.dumps(p[key], sort_keys=True): p[key] for p in exp.points}.values())
        if key in ranges:
            space[key] = _domain(ranges[key])
        elif len(values) == 1:
            space[key] = values[0]
        elif exp.search == "grid":
            space[key] = tune.grid_search(values)
        elif key != "seed":  # optuna searches the space at the first seed
            space[key] = tune.choice(values)
        else:
            space[key] = values[0]
    return space


def _domain(r: Range) -> Any:
    """The Ray Tune search domain of a study range (OptunaSearch turns it into an Optuna
    distribution)."""
    from ray import tune

    return tune.loguniform(r.low, r.high) if r.log else tune.uniform(r.low, r.high)


def run_tune(exp: Experiment, restore: bool) -> None:
    """Run the experiment's trials, or restore it and finish the unfinished ones.

    On a cluster (``--address``) every node must see ``exp.root``: else ClusterError."""
    opts = exp.options
    start_ray(opts.address, opts.dashboard)
    import ray
    from ray import tune

    try:
        if opts.address:  # every node must see the trial folders; warn about missing data
            dataset = exp.points[0].get("dataset", "mnist")
            for warning in check_nodes(exp.root, exp.data_dir, dataset):
                print(warning, flush=True)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, ctx=TrialContext.of(exp)),
            {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
        if not restore:
            tune.Tuner(trainable, param_space=param_space(exp),
                       tune_config=_tune_config(exp), run_config=_run_config(exp)
                       ).fit()
            return
        if tune.Tuner.restore(exp.ray_dir, trainable, resume_errored=True).fit().errors:
            # If the driver died after Ray dropped the checkpoint its last snapshot names,
            # that trial cannot resume from it: restart it, and it loads its own state.pt
            tune.Tuner.restore(exp.ray_dir, trainable, restart_errored=True).fit()
        if exp.search == "grid" and exp.unfinished():  # done for Ray, yet files are missing:
            tune.Tuner(trainable, param_space=param_space(exp),  # the others report again
                       tune_config=_tune_config(exp), run_config=_run_config(exp)
                       ).fit()
    finally:
        ray.shutdown()


def _run_config(exp: Experiment):
    from ray import tune


    return tune.RunConfig(
        name=RAY_NAME, storage_path=exp.ray_storage,
        failure_config=tune.FailureConfig(max_failures=exp.options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=1,
        callbacks=[_trial_lines(exp)],
        progress_reporter=tune.CLIReporter(
            parameter_columns=varying(exp.points) or ["ratio"],
            metric_columns=PROGRESS_METRICS, max_report_frequency=30))


def _trial_lines(exp: Experiment):
    """A Tune callback printing one line per finished trial and the time left."""
    from ray import tune

    lines = TrialLines(exp.total_trials, varying(exp.points))

    class _Lines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
            print(lines.finished(trial.last_result or {}), flush=True)

    return _Lines()


def _tune_config(exp: Experiment):
    from ray import tune

    search_alg, samples = None, 1
    if exp.search == "optuna":  # multi-objective: every penalised objective, seeded sampler
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(metric=[f"score_{k}" for k in exp.study.objectives],
                                  mode=list(exp.study.objectives.values()),
                                  seed=exp.options.seed)
        samples = exp.total_trials
    return tune.TuneConfig(search_alg=search_alg, num_samples=samples, reuse_actors=True,
                           max_concurrent_trials=exp.options.max_concurrent,
                           trial_dirname_creator=lambda trial: trial.trial_id)
