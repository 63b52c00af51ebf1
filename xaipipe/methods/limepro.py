"""LimePro: LIME (Ribeiro et al., 2016) showing the evidence FOR the target class.

The map holds, on each of the ``num_features`` segments with the largest positive
ridge weights, that weight w_s > 0; every other pixel is 0. See :mod:`xaipipe.methods.lime`.
"""

from __future__ import annotations

from xaipipe.methods.lime import Lime


class LimePro(Lime):
    name = "limepro"
    sign = 1
