"""xaipipe's data generator: the seed framework's interface over xaipipe's loading and preprocessing.

:func:`xaipipe.xai_decoder` needs only the duck-typed interface (``samples``,
``path_imagedir``, ``image_format``, ``grayscale``, ``batch_size``, ``kwargs``,
``sample_loader`` and ``preprocess_image``), so generators of the seed framework
work as well as this one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from xaipipe.channels import convert_channels
from xaipipe.preprocess import Preprocessing
from xaipipe.readers import load_sample
from xaipipe.samples import sample_path, split_series


def image_loader(
    sample: str, path_imagedir: str | os.PathLike, image_format: str | None = None, grayscale: bool = False, **kwargs: Any
) -> np.ndarray:
    """Load a sample as the seed framework's loaders do: always with a channel axis (1 gray, 3 RGB).

    ``kwargs`` may hold ``spatial_dims`` (3 for volumes; 2 by default).
    """
    dims = kwargs.get("spatial_dims", 2)
    array, _ = load_sample(sample_path(path_imagedir, sample, image_format), dims, split_series(sample)[1])
    image = convert_channels(array, 1 if grayscale else 3, dims)
    return image[..., None] if image.ndim == dims else image


class DataGenerator(keras.utils.PyDataset):
    """Samples, their folder and the preprocessing that turns them into model inputs.

    ``resize`` is (height, width) or (depth, height, width); ``standardize_mode``,
    ``subfunctions`` (objects of :mod:`xaipipe.subfunctions`) and ``interpolation``
    are as in the config; ``grayscale`` gives the model one channel instead of three.
    A Keras ``PyDataset``, as the seed's generator is a Keras ``Sequence``: ``model.predict(datagen)`` gives the
    predictions the decoder takes (the seed's example), and with ``labels`` (one-hot rows) a batch is
    ``(inputs, labels)``, which ``model.fit`` and ``model.evaluate`` take.
    """

    def __init__(
        self,
        samples: Sequence[str],
        path_imagedir: str | os.PathLike,
        labels: np.ndarray | None = None,
        image_format: str | None = None,
        batch_size: int = 32,
        resize: Sequence[int] = (224, 224),
        standardize_mode: str = "minmax",
        grayscale: bool = False,
        subfunctions: Sequence[Any] = (),
        interpolation: str | None = None,
        loader: Callable[..., np.ndarray] = image_loader,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__()
        if len(samples) == 0:
            raise ValueError("the sample list is empty")
        if labels is not None and len(labels) != len(samples):
            raise ValueError(f"{len(labels)} labels for {len(samples)} samples; give one label row per sample")
        self.samples = list(samples)
        self.path_imagedir = path_imagedir
        self.labels = labels
        self.image_format = image_format
        self.batch_size = batch_size
        self.grayscale = grayscale
        self.sample_loader = loader
        self.preprocessing = Preprocessing(
            size=tuple(resize),
            channels=1 if grayscale else 3,
            standardize=standardize_mode,
            interpolation=interpolation or ("area" if len(resize) == 2 else "linear"),
            subfunctions=tuple(subfunctions),
            seed=seed,
        )
        self.kwargs = {"spatial_dims": self.preprocessing.spatial_dims, **kwargs}

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def preprocess_image(
        self, index: int, run_resize: bool = True, run_aug: bool = True, run_standardize: bool = True
    ) -> np.ndarray:
        """Sample ``index`` after the subfunctions, and the resize and standardization where asked.

        xaipipe has no augmentation; ``run_aug`` is accepted for the seed's interface.
        """
        p = self.preprocessing
        image = self.sample_loader(
            self.samples[index], self.path_imagedir, image_format=self.image_format, grayscale=self.grayscale, **self.kwargs
        )
        return p.finish(p.apply_subfunctions(image, index), run_resize, run_standardize)

    def __getitem__(self, batch: int) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The model inputs of batch ``batch``, and with ``labels`` their labels: ``(inputs, labels)``."""
        if not 0 <= batch < len(self):
            raise IndexError(f"batch {batch} of a generator of {len(self)} batches")
        indices = range(batch * self.batch_size, min((batch + 1) * self.batch_size, len(self.samples)))
        inputs = np.stack([self.preprocess_image(i, run_aug=False) for i in indices])
        if self.labels is None:
            return inputs
        return inputs, np.asarray(self.labels)[indices.start : indices.stop]
