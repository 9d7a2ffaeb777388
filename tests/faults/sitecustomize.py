"""Fault injection for the tests, loaded only through ``PYTHONPATH=tests/faults``.

Python imports ``sitecustomize`` at start-up, so the sweep's driver and every Ray worker it
starts (they inherit the environment) read ``NEST_TEST_FAULTS``, a JSON object; without it
this does nothing, and production code holds no test switch. Faults, each a
``{config field: value}`` match on the trial's SynthesisConfig:

- ``crash_once``: the worker kills itself (SIGKILL) mid-trial, at its 3rd history event, once
  per config (a marker file in ``dir`` remembers it);
- ``nan``: the network's weights become NaN, so training raises NonFiniteLossError;
- ``slow``: seconds to sleep after every synthesis iteration (a window for a test to act);
- ``enospc``: file names whose atomic writes fail with ENOSPC (a full disk).
"""

from __future__ import annotations

import errno
import importlib.abc
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ENV = "NEST_TEST_FAULTS"


def _matches(match: dict[str, Any] | None, cfg: Any) -> bool:
    return match is not None and all(getattr(cfg, k, None) == v for k, v in match.items())


def _patch_trainable(module: Any, faults: dict[str, Any]) -> None:
    make = module.make_synthesis

    def make_synthesis(cfg: Any, data: Any) -> Any:
        import torch

        synth = make(cfg, data)
        if _matches(faults.get("nan"), cfg):
            with torch.no_grad():
                for p in synth.net.parameters():
                    p.fill_(math.nan)
        marker = Path(faults.get("dir", ".")) / f"crashed-{cfg.config_id}"
        crash = _matches(faults.get("crash_once"), cfg) and not marker.exists()
        run, slow = synth.run, float(faults.get("slow", 0))

        def run_with_faults(on_step: Any = None) -> Any:
            def step(report: dict, s: Any) -> None:
                if crash and len(s.history) >= 3:
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)
                on_step(report, s)
                time.sleep(slow)

            return run(step if on_step is not None else None)

        synth.run = run_with_faults
        return synth

    module.make_synthesis = make_synthesis


def _patch_atomic(module: Any, faults: dict[str, Any]) -> None:
    stage, full = module._stage, set(faults.get("enospc", []))

    def _stage(path: Path, write: Any) -> Path:
        if Path(path).name in full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return stage(path, write)

    module._stage = _stage


PATCHES = {"explorer.trial": _patch_trainable, "nest_core.atomic": _patch_atomic}


class _Finder(importlib.abc.MetaPathFinder):
    """Patches a module right after it is first executed."""

    def __init__(self, faults: dict[str, Any]) -> None:
        self.faults = faults

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        else:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            PATCHES[name](module, self.faults)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(ENV):
    sys.meta_path.insert(0, _Finder(json.loads(os.environ[ENV])))
