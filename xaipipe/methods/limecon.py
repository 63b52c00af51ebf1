"""LimeCon: LIME (Ribeiro et al., 2016) showing the evidence AGAINST the target class.

The map holds, on each of the ``num_features`` segments with the most negative
ridge weights, the absolute weight |w_s| (w_s < 0); every other pixel is 0.
See :mod:`xaipipe.methods.lime`.
"""

from __future__ import annotations

from xaipipe.methods.lime import Lime


class LimeCon(Lime):
    name = "limecon"
    sign = -1
