"""Fig. 6/7 and the seed-space panels: misses hollow and counted, a colour bar for the ratio,
labels that stay few at 2,000 trials."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from explorer.report import figures
from explorer.report.space import fig_space, seed_text, space_front, varying_params


def trials(n: int, seed: int = 0, missed: float = 0.2) -> pd.DataFrame:
    """`n` completed trials over a continuous ratio, a share of them missing the target."""
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0.2, 1.0, n)
    return pd.DataFrame({
        "model": "lenet300", "method": "nest", "ratio": ratio,
        "density": rng.choice([0.05, 0.1, 0.2, 0.4], n), "alpha": rng.uniform(0.1, 1.0, n),
        "beta": rng.uniform(0.05, 0.3, n), "post_growth_params": 30_000 + 90_000 * ratio**2,
        "growth_seconds": 200 * (1.2 - ratio), "growth_samples": 1e6 * (1.2 - ratio),
        "final_params": 6_000 + 4_000 * ratio, "status": "completed",
        "target_reached": rng.random(n) >= missed, "trial_id": [f"t{i}" for i in range(n)],
    })  # fmt: skip


def test_fig6_panel_draws_misses_hollow_and_labels_few_points():
    df = figures.plot_rows(trials(2000))
    fig, ax = plt.subplots()
    figures._fig6_panel(ax, df, "seconds", figures.ratio_norm(df))
    hit, miss, _front = ax.collections[:3]
    assert len(hit.get_offsets()) + len(miss.get_offsets()) == 2000
    assert len(miss.get_offsets()) == int((~df["_reached"]).sum())
    assert len(miss.get_facecolors()) == 0  # hollow: no face colour
    labels = [t.get_text() for t in ax.texts]
    assert 0 < len(labels) <= figures.LABEL_FRONT and all(t.startswith("r=") for t in labels)
    plt.close(fig)


def test_small_panel_labels_each_ratio_and_each_miss_once():
    df = trials(12, missed=0.0).assign(ratio=[0.2, 0.5, 1.0] * 4)
    df.loc[[0, 1], "target_reached"] = False
    rows = figures.plot_rows(df)
    fig, ax = plt.subplots()
    figures._fig6_panel(ax, rows, "samples", figures.ratio_norm(rows))
    assert sorted(t.get_text() for t in ax.texts) == [
        "r=0.2", "r=0.2 missed", "r=0.5", "r=0.5 missed", "r=1"]
    plt.close(fig)


def test_fig6_has_a_colour_bar_not_a_legend_per_ratio(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.setdefault("fig", fig))
    df = pd.concat([trials(500), trials(3, seed=1).assign(status="failed")])
    figures.fig_growth_vs_size(df, tmp_path / "fig6.png")
    fig = drawn["fig"]
    colorbars = [a for a in fig.axes if a.get_ylabel() == "seed ratio r"]
    assert len(colorbars) == 1 and len(fig.axes) == 3  # two panels (seconds, samples) + bar
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "reached the target", "missed the target", "Pareto front (at the target)"]
    missed = int((~trials(500)["target_reached"]).sum())
    assert f"500 trials, {missed} missed the target (hollow), 3 failed" in fig._suptitle.get_text()
    plt.close(fig)


def test_every_figure_writes_a_png_even_without_data(tmp_path):
    empty = trials(5).assign(status="failed")
    for draw, name in ((figures.fig_growth_vs_size, "a.png"), (figures.fig_compression, "b.png"),
                       (fig_space, "c.png")):
        for df in (trials(40), empty):
            path = draw(df, tmp_path / name)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_fig7_bins_a_continuous_ratio(monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.setdefault("fig", fig))
    figures.fig_compression(trials(300), tmp_path / "fig7.png")
    fig = drawn["fig"]
    assert "mean ± std over trials per ratio bin" in fig._suptitle.get_text()
    errorbar = fig.axes[0].lines[0]
    assert len(errorbar.get_xdata()) == 12  # ratio_groups' 12 bins, not 300 points
    plt.close(fig)


def test_space_helpers():
    df = trials(50)
    assert varying_params(df) == ["ratio", "density", "alpha", "beta"]
    assert varying_params(df.assign(density=0.1, alpha=0.3, beta=0.1)) == ["ratio"]
    front = space_front(df, {"post_growth_params": "min", "growth_seconds": "min"})
    assert len(front) and front["target_reached"].all()
    assert seed_text({"ratio": 0.41234, "density": 0.1, "alpha": 0.5, "beta": 0.12}) == (
        "r = 0.412, d = 0.1, α = 0.5, β = 0.12")


@pytest.mark.parametrize("bad", [(), ("minutes",)])
def test_fig6_rejects_unknown_time_axes(tmp_path, bad):
    with pytest.raises(ValueError, match="time_axes"):
        figures.fig_growth_vs_size(trials(5), tmp_path / "x.png", time_axes=bad)
