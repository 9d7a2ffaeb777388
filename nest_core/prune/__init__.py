"""Pruning (Section 3.2 of the NeST paper): magnitude pruning (Policy 4, ``magnitude``),
dead-unit removal (``dead_units``, cutting units with ``cut``) and partial-area convolution
(Algorithm 2, ``partial_area``)."""
