"""Feature-map growth (Policy 3). PLACEHOLDER: being written; grows nothing yet."""

from __future__ import annotations


def grow_feature_maps(net, layer, count, batch, candidates, density, alpha, generator):
    return []
