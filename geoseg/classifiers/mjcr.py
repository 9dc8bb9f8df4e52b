"""The MJCR road classifier as geoseg uses it on scenes: bands, normalisation, scales in metres.

:class:`geoseg.road.mjcr.MJCRModel` works on feature maps; this module wraps it with what a
scene needs: which bands to read, the per-band statistics that normalise raw pixel values,
the feature scales **in metres** (converted with each scene's GSD, so one model serves scenes
of other resolutions), training from image/label pairs, and the safe model file
(:mod:`geoseg.modelfile`, ``.npz`` + JSON, no pickle).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import InputMismatchError, ModelFileError
from geoseg.modelfile import read_model, save_model
from geoseg.road.features import base_channels, feature_description, feature_groups, multiscale_features, window_sides
from geoseg.road.mjcr import MJCRModel
from geoseg.scene_checks import TrainingScenes, ValueSummary, check_value_range, data_bands, scaled, select_model_bands

__all__ = ["MJCRClassifier", "DEFAULT_SCALES_M"]

#: Feature scales in metres: a car, a lane, a road's width (see ``benchmarks/bench_mjcr.py``).
DEFAULT_SCALES_M = (1.0, 2.5, 5.0)

#: Peak memory per pixel of features and coding while classifying (measured: 435 B on a
#: 1024² tile of the sample model), and what a strip of them may hold.
FEATURE_BYTES_PER_PIXEL = 440
STRIP_BYTES = 128 * 2**20
#: Memory per tile pixel of :meth:`MJCRClassifier.predict_proba` beyond its strips: the image
#: as float32, the base channels' means pass and the probability.
PREDICT_BYTES_PER_PIXEL = 48


@dataclass
class MJCRClassifier:
    """A trained MJCR road classifier with everything needed to apply it to a scene.

    Attributes
    ----------
    model : MJCRModel
        The collaborative-representation model (on features).
    bands : list of int
        1-based band indexes of the scene it reads.
    band_mean, band_std : numpy.ndarray
        Per-band statistics of the training pixels (raw values), for z-score normalisation.
    scales_m : list of float
        Feature scales in metres.
    gradient_sigma_m : float
        Scale of the gradient-magnitude texture channel, metres.
    train_gsd_m : float
        GSD of the training scenes (informative; scales are converted per scene).
    trained_on : TrainingScenes
        Data type, data band count, band names and value range of the training scenes;
        scenes unlike them are refused (older model files record only the band count).
    provenance : dict
        Where the training data came from.
    path : str
        The model file (for messages).
    """

    model: MJCRModel
    bands: list[int]
    band_mean: np.ndarray
    band_std: np.ndarray
    scales_m: list[float]
    gradient_sigma_m: float = 0.3
    train_gsd_m: float = float("nan")
    trained_on: TrainingScenes = field(default_factory=lambda: TrainingScenes(scene_bands=3))
    provenance: dict = field(default_factory=dict)
    path: str = "<memory>"

    KIND = "mjcr"

    # ------------------------------------------------------------------ features
    def scales_px(self, gsd_m: float) -> list[float]:
        """Feature scales in pixels of a scene of this GSD."""
        return [s / gsd_m for s in self.scales_m]

    def halo_px(self, gsd_m: float) -> int:
        """Neighbourhood (pixels) a probability depends on: half the widest window plus the joint window."""
        widest = max(window_sides(self.scales_px(gsd_m)))
        return int(math.ceil(widest / 2 + self.model.joint_window_px / 2 + 2 * self.gradient_sigma_m / gsd_m))

    @property
    def scene_bands(self) -> int | None:
        """Data band count of the training scenes (alpha bands not counted)."""
        return self.trained_on.scene_bands

    def select_bands(
        self,
        image: np.ndarray,
        source: str = "<scene>",
        band_names: Sequence[str] = (),
        *,
        bands: Sequence[int] | None = None,
        label: str = "mjcr_classify",
        valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """The model's bands of a raw ``(bands, rows, cols)`` scene, checked.

        Without ``bands`` (the user's 1-based selection, in the model's band order), the scene
        must have as many data bands (alpha bands not counted) as the training scenes, with the
        same names where both are named; see :func:`geoseg.scene_checks.select_model_bands`.
        """
        return select_model_bands(
            image, band_names, self.trained_on, self.bands, chosen=bands, source=source, model=f"the MJCR model {self.path}", label=label, valid=valid
        )

    def check_values(self, summary: ValueSummary, *, scale: float | None = None, label: str = "mjcr_classify") -> None:
        """Refuse a scene whose values (times ``scale``) are far outside the training scenes' (another bit depth or unit)."""
        check_value_range(summary, self.trained_on, scale=scale, model=f"the MJCR model {self.path}", label=label)

    def _normalised(self, selected: np.ndarray) -> np.ndarray:
        return (selected.astype(np.float32) - self.band_mean[:, None, None].astype(np.float32)) / self.band_std[:, None, None].astype(np.float32)

    def features(self, selected: np.ndarray, gsd_m: float, channel_means: np.ndarray | None = None) -> np.ndarray:
        """Normalised multiscale features of the model's bands (``selected``).

        ``channel_means`` are the scene's base-channel means (:meth:`channel_sums`); by
        default those of ``selected`` itself.
        """
        feats, _ = multiscale_features(
            self._normalised(selected), self.scales_px(gsd_m), gradient_sigma_px=self.gradient_sigma_m / gsd_m, channel_means=channel_means
        )
        return feats

    def channel_sums(self, selected: np.ndarray, gsd_m: float, valid: np.ndarray, core: tuple[slice, slice]) -> tuple[np.ndarray, int]:
        """Sums of the base channels of the model's bands (``selected``) over the valid ``core`` pixels of a tile, and their count.

        Summed over the tiles of a scene and divided, they give the scene's channel means,
        so that a tiled scene is centred exactly like a whole one.
        """
        channels, _ = base_channels(self._normalised(selected), gradient_sigma_px=self.gradient_sigma_m / gsd_m)
        keep = valid[core]
        return channels[:, core[0], core[1]][:, keep].sum(axis=1, dtype=np.float64), int(keep.sum())

    def predict_proba(
        self,
        image: np.ndarray,
        gsd_m: float,
        valid: np.ndarray | None = None,
        source: str = "<scene>",
        channel_means: np.ndarray | None = None,
        band_names: Sequence[str] = (),
        *,
        bands: Sequence[int] | None = None,
        scale: float | None = None,
        label: str = "mjcr_classify",
    ) -> np.ndarray:
        """Road probability of every pixel of a raw ``(bands, rows, cols)`` scene.

        ``bands`` selects the scene's bands (see :meth:`select_bands`), ``scale`` multiplies
        their values before the model. Pixels outside ``valid`` get probability 0.
        """
        selected = scaled(self.select_bands(image, source, band_names, bands=bands, label=label, valid=valid), scale)
        if channel_means is None:  # the tile's own means, as whole-tile features would use
            sums, count = self.channel_sums(selected, gsd_m, np.ones(selected.shape[1:], bool), (slice(None), slice(None)))
            channel_means = (sums / max(count, 1)).astype(np.float32)
        prob = self._predict_in_strips(selected, gsd_m, channel_means)
        if valid is not None:
            prob = np.where(valid, prob, np.float32(0.0))
        return prob

    def _predict_in_strips(self, selected: np.ndarray, gsd_m: float, channel_means: np.ndarray) -> np.ndarray:
        """Probabilities of a tile computed strip of rows by strip, each with the rows its features reach.

        The features of a strip hold about :data:`STRIP_BYTES`, whatever the tile's size, so a
        tile costs :data:`PREDICT_BYTES_PER_PIXEL` per pixel, not the features' 440. Each strip
        reads the rows its features reach beyond it (:meth:`halo_px` with the Gaussian
        gradient's full support of 4 σ), so strips equal the whole tile's result up to float
        rounding; strips are at least 16 times that reach, so the rows read twice cost at most
        about 12 %.
        """
        height, width = selected.shape[1:]
        reach = self.halo_px(gsd_m) + math.ceil(2 * self.gradient_sigma_m / gsd_m) + 1
        rows = max(16 * reach, STRIP_BYTES // max(1, width * FEATURE_BYTES_PER_PIXEL))
        prob = np.empty((height, width), np.float32)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            a, b = max(0, r0 - reach), min(height, r1 + reach)
            strip = self.model.predict_proba(self.features(selected[:, a:b], gsd_m, channel_means))
            prob[r0:r1] = strip[r0 - a : r1 - a]
        return prob

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        gsd_m: Sequence[float],
        *,
        bands: Sequence[int] | None = None,
        scales_m: Sequence[float] = DEFAULT_SCALES_M,
        gradient_sigma_m: float = 0.3,
        lam: float = 0.1,
        atoms_per_class: int = 1000,
        joint_window_m: float = 1.0,
        seed: int = 0,
        band_names: Sequence[str] = (),
    ) -> MJCRClassifier:
        """Fit a classifier from raw scenes and label rasters.

        Parameters
        ----------
        images : sequence of numpy.ndarray
            Raw ``(bands, rows, cols)`` scenes (all with the same bands).
        labels : sequence of numpy.ndarray
            ``(rows, cols)`` labels: 1 road, 0 background, anything else unlabelled.
        gsd_m : sequence of float
            GSD of each scene.
        bands : sequence of int, optional
            1-based bands to use (default: the first three, or all when fewer).
        scales_m : sequence of float
            Feature scales in metres.
        gradient_sigma_m : float
            Scale of the texture gradient, metres.
        lam, atoms_per_class, seed
            See :meth:`geoseg.road.mjcr.MJCRModel.fit`.
        joint_window_m : float
            Side of the joint-coding window in metres (odd number of pixels at the mean GSD).
        band_names : sequence of str
            Band names of the training scenes; ``alpha`` bands are neither used nor counted.
            The model records them with the scenes' data type and value range
            (:class:`geoseg.scene_checks.TrainingScenes`).
        """
        if not images or len(images) != len(labels) or len(images) != len(gsd_m):
            raise InputMismatchError("training needs as many label rasters and GSDs as images (and at least one)")
        n_bands = images[0].shape[0]
        if any(im.shape[0] != n_bands for im in images):
            raise InputMismatchError("training images have different band counts")
        data = data_bands(n_bands, band_names)
        chosen = list(bands) if bands is not None else data[:3]
        if not chosen or min(chosen) < 1:
            raise InputMismatchError(f"bands {chosen}: band numbers start at 1")
        missing = [b for b in chosen if b > n_bands]
        if missing:
            raise InputMismatchError(f"bands {chosen}: band(s) {missing} do not exist (the training images have {n_bands} band(s))")
        selected = [im[[b - 1 for b in chosen]].astype(np.float64) for im in images]
        stacked = np.concatenate([s.reshape(len(chosen), -1) for s in selected], axis=1)
        band_mean = stacked.mean(axis=1)
        band_std = np.maximum(stacked.std(axis=1), 1e-6)
        mean_gsd = float(np.mean(gsd_m))
        joint_px = max(1, 2 * int(round(joint_window_m / mean_gsd / 2)) + 1)
        wrapper = cls(
            model=None,  # type: ignore[arg-type]  # set below, features need the statistics
            bands=chosen,
            band_mean=band_mean,
            band_std=band_std,
            scales_m=[float(s) for s in scales_m],
            gradient_sigma_m=gradient_sigma_m,
            train_gsd_m=mean_gsd,
            trained_on=TrainingScenes.measure(images, chosen, scene_bands=len(data), band_names=band_names),
        )
        feats = [wrapper.features(s, g) for s, g in zip(selected, gsd_m)]
        names = multiscale_features(np.zeros((len(chosen), 3, 3), np.float32), wrapper.scales_px(mean_gsd))[1]
        spec = feature_description(len(chosen), wrapper.scales_px(mean_gsd), gradient_sigma_px=gradient_sigma_m / mean_gsd)
        wrapper.model = MJCRModel.fit(
            feats,
            [np.asarray(lab) for lab in labels],
            groups=feature_groups(names),
            lam=lam,
            atoms_per_class=atoms_per_class,
            joint_window_px=joint_px,
            seed=seed,
            feature_names=names,
            feature_spec=spec,
        )
        return wrapper

    # ------------------------------------------------------------------ model file
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the classifier to a safe model file (``.npz`` + JSON metadata)."""
        arrays = {f"mjcr.{k}": v for k, v in self.model.to_arrays().items()}
        arrays["band_mean"] = np.asarray(self.band_mean, np.float64)
        arrays["band_std"] = np.asarray(self.band_std, np.float64)
        metadata = {
            "kind": self.KIND,
            "bands": self.bands,
            "scales_m": self.scales_m,
            "gradient_sigma_m": self.gradient_sigma_m,
            "train_gsd_m": self.train_gsd_m,
            "scene_bands": self.scene_bands,
            "trained_on": self.trained_on.to_json(),
            "classes": ["background", "road"],
            "provenance": self.provenance,
            "mjcr": self.model.metadata(),
        }
        return save_model(path, arrays, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MJCRClassifier:
        """Read a classifier written by :meth:`save` (nothing in the file is executed).

        Raises
        ------
        ModelFileError
            Not a geoseg MJCR model file, or an incomplete one.
        """
        classifier: MJCRClassifier = read_model(path, (cls.KIND,))
        return classifier

    @classmethod
    def from_file(cls, path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> MJCRClassifier:
        """The classifier of an MJCR model file's arrays and metadata (the registered builder of its kind).

        Raises
        ------
        ModelFileError
            Incomplete metadata or arrays; names ``path``.
        """
        try:
            inner = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("mjcr.")}
            return cls(
                model=MJCRModel.from_arrays(inner, meta["mjcr"]),
                bands=[int(b) for b in meta["bands"]],
                band_mean=arrays["band_mean"],
                band_std=arrays["band_std"],
                scales_m=[float(s) for s in meta["scales_m"]],
                gradient_sigma_m=float(meta["gradient_sigma_m"]),
                train_gsd_m=float(meta["train_gsd_m"]),
                trained_on=TrainingScenes.from_json(meta.get("trained_on"), scene_bands=int(meta["scene_bands"])),
                path=str(path),
                provenance=dict(meta.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"{path}: incomplete MJCR model file ({exc})") from exc
