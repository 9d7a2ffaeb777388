"""Growth (Section 3.1 of the NeST paper): connections (Policy 1, ``connections``), neurons
(Policy 2, Algorithm 1, ``neurons``) and feature maps (Policy 3, ``maps``)."""
