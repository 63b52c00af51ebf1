"""SmoothGrad (Smilkov et al., 2017, "SmoothGrad: removing noise by adding noise") and VarGrad
(Adebayo et al., 2018, "Local Explanation Methods for Deep Neural Networks Lack Sensitivity
to Parameter Values") as keys of their own: saliency maps with the ``noise`` option on.

SmoothGrad: M_ij = max_c | (1/n) sum_k dS/dx_ijc (x + s eps_k) |;
VarGrad:    M_ij = max_c Var_k dS/dx_ijc (x + s eps_k)   (the population variance, >= 0),

with n = ``noise.samples`` noisy copies of x, s = ``noise.sigma`` * (max(x) - min(x)) and
eps_k shared standard-normal noise drawn from ``noise.seed`` (see :mod:`xaipipe.methods.noise`,
which also gives the other methods their ``noise`` option). Defaults: 50 copies, sigma 0.15
(Smilkov et al. recommend 10-20 % of the range).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from xaipipe.methods import defaults
from xaipipe.methods.saliency import SaliencyMap

_SMOOTHGRAD = defaults("smoothgrad")
_VARGRAD = defaults("vargrad")


class SmoothGrad(SaliencyMap):
    name = "smoothgrad"

    def __init__(
        self,
        model: keras.Model,
        score: str = _SMOOTHGRAD["score"],
        noise: Mapping[str, Any] | None = _SMOOTHGRAD["noise"],
        chunk_size: int = _SMOOTHGRAD["chunk_size"],
    ):
        super().__init__(model, score, noise, chunk_size)


class VarGrad(SaliencyMap):
    name = "vargrad"

    def __init__(
        self,
        model: keras.Model,
        score: str = _VARGRAD["score"],
        noise: Mapping[str, Any] | None = _VARGRAD["noise"],
        chunk_size: int = _VARGRAD["chunk_size"],
    ):
        super().__init__(model, score, noise, chunk_size)
