"""Studies ship inside the wheel and are found wherever the project is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools
import yaml

from explorer.studies import STUDIES_DIR, available_studies, load_study, study_path
from tests.explorer.test_sweep import data_dir  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def test_package_list_covers_every_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = setuptools.find_packages(str(REPO), include=["nest_core*", "explorer*"])
    assert sorted(config["packages"]) == sorted([*found, "explorer.study_files"])
    assert config["package-dir"] == {"explorer.study_files": "studies"}


def test_working_directory_studies_come_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_path("lenet300") == STUDIES_DIR / "lenet300.yaml"  # the installed one
    (tmp_path / "studies").mkdir()
    raw = yaml.safe_load((STUDIES_DIR / "lenet300.yaml").read_text())
    (tmp_path / "studies" / "lenet300.yaml").write_text(
        yaml.safe_dump({**raw, "description": "my own"}))
    (tmp_path / "studies" / "mine.yaml").write_text(yaml.safe_dump({**raw, "name": "mine"}))
    assert load_study("lenet300").description == "my own"
    assert load_study("mine").name == "mine"
    assert {"mine", "lenet300", "lenet5"} <= set(available_studies())


@pytest.mark.slow
def test_wheel_runs_the_smoke_sweep_from_another_folder(tmp_path, data_dir):  # noqa: F811
    src = tmp_path / "src"
    for name in ("nest_core", "explorer", "studies"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w",
                    str(tmp_path / "wheel")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("nest_explorer-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert (site / "explorer" / "study_files" / "lenet300.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "NEST_DATA": str(data_dir)}
    where = subprocess.run([sys.executable, "-c", "import explorer; print(explorer.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))  # the wheel's copy, not the checkout
    run = subprocess.run([sys.executable, "-m", "explorer.sweep", "lenet300", "--budget",
                          "smoke", "--out", "out"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (trials,) = (elsewhere / "out" / "lenet300").glob("*/trials.parquet")
    assert len(list(trials.parent.glob("trials/*/model.pt"))) == 2
