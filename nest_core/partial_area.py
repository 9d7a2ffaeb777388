"""Partial-area convolution (Algorithm 2). PLACEHOLDER: being written; masks nothing yet."""

from __future__ import annotations


def partial_area_step(net, x, gamma):
    return {}
