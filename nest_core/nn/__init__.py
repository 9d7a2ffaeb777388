"""Masked building blocks: the mask type, masked Linear/Conv2d layers, the partial-area
convolution (Algorithm 2), layer surgery, unit groups and batch-norm effective weights
(Eqs. 8-9). Import the modules directly (``from nest_core.nn.layers import MaskedLinear``)."""
