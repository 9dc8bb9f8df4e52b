"""Multiscale joint collaborative representation (MJCR) road classifier.

Stage 1 of Cheng, Zhu, Xiang, Pan, arXiv 1508.06163 (journal version Neurocomputing 2016,
DOI 10.1016/j.neucom.2016.04.026, where the classifier is called FMCR, "fused multiscale
collaborative representation"), built on the collaborative representation classifier (CRC)
of Zhang, Yang, Feng, "Sparse representation or collaborative representation: which helps
face recognition?", ICCV 2011.

Collaborative representation
----------------------------
A dictionary ``X = [X_0, X_1]`` (columns = l2-normalised labelled feature samples, class 0 =
non-road, class 1 = road) codes a sample ``y`` by ridge regression,
``α = (XᵀX + λI)⁻¹Xᵀy = P y``, and the class residual is ``r_c = ‖y − X_c α_c‖``. Since
``r_c² = yᵀ Q_c y`` with ``Q_c = (I − X_c P_c)ᵀ(I − X_c P_c)`` (``D × D``, ``D`` = feature
dimension), a whole scene is coded by a few ``D × D`` matrix products per pixel, whatever the
dictionary size. By the push-through identity ``P = Xᵀ(XXᵀ + λI)⁻¹``, so
``X_c P_c = S_c (S + λI)⁻¹`` with the class scatter ``S_c = X_c X_cᵀ`` and ``S = Σ_c S_c``:
the fit itself only solves ``D × D`` systems. Likewise ``‖α_c‖² = yᵀ K_c y`` with
``K_c = M S_c M``, ``M = (S + λI)⁻¹``.

Choices of this implementation (the paper text was not available to us)
-----------------------------------------------------------------------
* **Sample vector.** Features of one scale group are z-scored with the training mean and
  standard deviation, a constant coordinate 1 is appended (so that l2 normalisation keeps
  the distance from the mean, not only the direction) and the vector is l2-normalised, as the
  atoms are. The squared residual of a pixel is then ``yᵀQ_c y / ‖y‖²`` in [0, 1].
* **Dictionary.** ``atoms_per_class`` labelled pixels drawn at random per class (balanced).
  The CR operators depend on the atoms only through ``S_c``, and random atoms give an
  unbiased estimate of each class's second-moment matrix (k-means centres would shrink it),
  so we sample rather than cluster.
* **λ.** Default 0.1, in units of atom energy (atoms are unit vectors, ``tr S_c`` = number of
  atoms): small next to the scatter along the data directions, large enough to keep
  ``S + λI`` well conditioned; results on the Ottawa tiles barely move for λ in
  [0.01, 1]. Residuals are divided by the code norms, as in Zhang et al.'s CRC_RLS rule,
  jointly over the window: ``Σ r_c² / Σ ‖α_c‖²`` (``divide_by_coef_norm=True``, default;
  on held-out Ottawa tiles it raised road IoU by about 0.04 over plain residuals).
* **Joint.** A pixel is coded together with its ``w × w`` neighbours ``Y = [y_1 … y_k]``
  by the Frobenius-norm ridge problem ``min_A ‖Y − XA‖_F² + λ‖A‖_F²``. It decouples into
  one CR per column (``A = PY``), so the joint class residual ``‖Y − X_c A_c‖_F²`` is the
  window sum of per-pixel squared residuals: a box filter on the residual maps (equivalently
  ``tr(Q_c Σ_j y_j y_jᵀ)``, the quadratic form applied to the window's second-moment matrix).
  Joint CR in the literature often codes the neighbourhood *mean* instead; the sum of
  residuals keeps a mixed window (road edge) from looking like a third, average material.
* **Multiscale / fused.** One CR model per scale group of features (each with its own
  dictionary operators); each gives a margin ``m_g = log(R_0 / R_1)`` (joint, optionally
  norm-divided, residual of non-road over road; positive = road). The margins are fused by a logistic regression
  ``p(road) = σ(w·m + b)`` fitted on labelled pixels held out from the dictionary, drawn
  uniformly (so the prior is the scene's). This is both the fusion and the probability
  **calibration** (weights are learnt, not fixed averages; with one group it is Platt scaling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from geoseg.errors import InputMismatchError, ModelFileError

__all__ = [
    "MJCRModel",
    "cr_coefficients",
    "cr_residual_forms",
    "quadratic_form",
]

_CHUNK = 1 << 18  # pixels per block when coding a scene (bounds temporaries)
_EPS = 1e-12


def cr_coefficients(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """Collaborative-representation codes ``α = (XᵀX + λI)⁻¹XᵀY``.

    Computed as ``Xᵀ(XXᵀ + λI)⁻¹Y`` (push-through identity), which needs a ``D × D`` solve.

    Parameters
    ----------
    X : ndarray, shape (D, n)
        Dictionary, one atom per column.
    Y : ndarray, shape (D,) or (D, m)
        Samples to code.
    lam : float
        Ridge parameter λ > 0.

    Returns
    -------
    ndarray, shape (n,) or (n, m)
        Codes.

    Examples
    --------
    >>> cr_coefficients(np.eye(2), np.array([1.0, 2.0]), 1.0).tolist()
    [0.5, 1.0]
    """
    X = np.asarray(X, np.float64)
    S = X @ X.T + lam * np.eye(X.shape[0])
    return X.T @ np.linalg.solve(S, np.asarray(Y, np.float64))


def cr_residual_forms(X: np.ndarray, atom_labels: np.ndarray, lam: float, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Quadratic forms of the class residuals and code norms of a CR dictionary.

    Parameters
    ----------
    X : ndarray, shape (D, n)
        Dictionary, one atom per column.
    atom_labels : ndarray, shape (n,)
        Class index ``0 … n_classes-1`` of every atom.
    lam : float
        Ridge parameter λ > 0.
    n_classes : int, default 2
        Number of classes.

    Returns
    -------
    Q : ndarray, shape (n_classes, D, D)
        ``‖y − X_c α_c‖² = yᵀ Q[c] y``.
    K : ndarray, shape (n_classes, D, D)
        ``‖α_c‖² = yᵀ K[c] y``.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``lam`` is not positive.

    Examples
    --------
    A sample along the atom of class 0 leaves the smaller residual for class 0:

    >>> Q, K = cr_residual_forms(np.eye(2), np.array([0, 1]), 1.0)
    >>> y = np.array([1.0, 0.0])
    >>> [float(y @ Q[c] @ y) for c in range(2)], [float(y @ K[c] @ y) for c in range(2)]
    ([0.25, 1.0], [0.25, 0.0])
    """
    X = np.asarray(X, np.float64)
    atom_labels = np.asarray(atom_labels)
    if lam <= 0:
        raise InputMismatchError(f"lambda must be > 0, got {lam}")
    D = X.shape[0]
    scatters = np.stack([X[:, atom_labels == c] @ X[:, atom_labels == c].T for c in range(n_classes)])
    M = np.linalg.inv(scatters.sum(axis=0) + lam * np.eye(D))
    R = np.eye(D) - scatters @ M  # I − X_c P_c = I − S_c M
    Q = np.transpose(R, (0, 2, 1)) @ R
    K = M @ scatters @ M
    return Q, K


def quadratic_form(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``yᵀ A y`` for every column ``y`` of ``Y``.

    Parameters
    ----------
    A : ndarray, shape (D, D)
        Matrix of the form.
    Y : ndarray, shape (D, m)
        Vectors, one per column.

    Returns
    -------
    ndarray, shape (m,)
        The value of the form for each column.

    Examples
    --------
    >>> quadratic_form(np.diag([1.0, 2.0]), np.array([[1.0, 0.0], [1.0, 1.0]])).tolist()
    [3.0, 2.0]
    """
    return np.einsum("im,im->m", Y, A @ Y)


def _augmented_forms(A: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``yᵀ A_k y`` for ``y = [z; 1]`` and a stack of forms ``A`` (k, D, D), shape (k, m).

    The constant coordinate is handled analytically, without building augmented vectors:
    ``zᵀ Q_k z + 2 l_kᵀ z + c_k``. The ``k`` quadratic parts are stacked into one contiguous
    ``(k·d, d)`` matrix, so that their products with ``Z`` are one BLAS call (numpy loops
    without BLAS over a stack of strided slices), and the linear parts are a second one:
    1.5× faster than one broadcast product (:file:`docs/RESULTS.md`, issue 18).
    """
    a = A.astype(np.float32)
    k, d = a.shape[0], a.shape[1] - 1
    quad = np.ascontiguousarray(a[:, :-1, :-1]).reshape(k * d, d)
    out = np.einsum("im,kim->km", Z, (quad @ Z).reshape(k, d, -1))
    out += (2.0 * a[:, :-1, -1]) @ Z
    out += a[:, -1, -1:]
    return out


def _unit_augmented(Z: np.ndarray) -> np.ndarray:
    """``[z; 1] / ‖[z; 1]‖`` column-wise, shape (D + 1, m)."""
    Y = np.vstack([Z, np.ones((1, Z.shape[1]), Z.dtype)])
    return Y / np.linalg.norm(Y, axis=0, keepdims=True)


def _as_scenes(features, labels) -> tuple[list[np.ndarray], list[np.ndarray]]:
    fs = [features] if isinstance(features, np.ndarray) and features.ndim == 3 else list(features)
    ls = [labels] if isinstance(labels, np.ndarray) and labels.ndim == 2 else list(labels)
    if len(fs) != len(ls) or not fs:
        raise InputMismatchError(f"got {len(fs)} feature stacks for {len(ls)} label maps")
    d = fs[0].shape[0]
    for f, lab in zip(fs, ls):
        if f.ndim != 3 or f.shape[0] != d or f.shape[1:] != lab.shape:
            raise InputMismatchError(f"features {f.shape} and labels {lab.shape} must be (d, H, W) and (H, W), same d everywhere")
    return fs, [np.asarray(lab).astype(np.int8) for lab in ls]


@dataclass
class MJCRModel:
    """Fitted multiscale joint collaborative representation road classifier.

    Build with :meth:`fit`; serialise with :meth:`to_arrays` and :meth:`metadata`, restore
    with :meth:`from_arrays`. All forms act on the augmented unit vectors of the module
    docstring, class 0 = non-road, class 1 = road.

    Attributes
    ----------
    groups : list of list of int
        Feature indices of every scale group.
    mean, std : ndarray, shape (n_features,)
        Training standardisation.
    residual_forms : list of ndarray, shape (2, D_g, D_g)
        ``Q_c`` per group (``D_g`` = group size + 1).
    coef_forms : list of ndarray, shape (2, D_g, D_g)
        ``K_c`` per group.
    calib_weights : ndarray, shape (n_groups,)
        Logistic weights of the per-group margins.
    calib_intercept : float
        Logistic intercept.
    lam : float
        Ridge parameter λ.
    joint_window_px : int
        Side of the joint-coding window (pixels, odd; 1 = no joint coding).
    divide_by_coef_norm : bool
        Whether residuals are divided by the code norms.
    atoms_per_class : int
        Number of dictionary atoms drawn per class (upper bound).
    feature_names : list of str
        Names of the features the model expects.
    feature_spec : dict
        Free JSON description of how the features were made (see
        :func:`geoseg.road.features.feature_description`).
    """

    groups: list[list[int]]
    mean: np.ndarray
    std: np.ndarray
    residual_forms: list[np.ndarray]
    coef_forms: list[np.ndarray]
    calib_weights: np.ndarray
    calib_intercept: float
    lam: float = 0.1
    joint_window_px: int = 5
    divide_by_coef_norm: bool = True
    atoms_per_class: int = 1000
    feature_names: list[str] = field(default_factory=list)
    feature_spec: dict = field(default_factory=dict)

    KIND = "mjcr"
    FORMAT_VERSION = 1

    @property
    def n_features(self) -> int:
        """Number of input features."""
        return int(self.mean.shape[0])

    @classmethod
    def fit(
        cls,
        features: np.ndarray | Sequence[np.ndarray],
        labels: np.ndarray | Sequence[np.ndarray],
        *,
        groups: Sequence[Sequence[int]] | None = None,
        lam: float = 0.1,
        atoms_per_class: int = 1000,
        joint_window_px: int = 5,
        divide_by_coef_norm: bool = True,
        n_calibration: int = 50_000,
        seed: int = 0,
        feature_names: Sequence[str] | None = None,
        feature_spec: dict | None = None,
    ) -> MJCRModel:
        """Fit dictionaries, residual forms and the calibrated fusion.

        The model is fitted from feature *maps*, not isolated samples, because joint coding
        needs each calibration pixel's neighbourhood.

        Parameters
        ----------
        features : ndarray (d, H, W) or sequence of them
            Feature maps of one or several training scenes.
        labels : ndarray (H, W) or sequence of them
            1 = road, 0 = non-road, any other value = unlabelled (ignored).
        groups : sequence of sequence of int, optional
            Feature indices of each scale group; default: all features in one group.
        lam : float, optional
            Ridge parameter λ (module docstring).
        atoms_per_class : int, optional
            Dictionary atoms drawn at random per class (fewer if a class has fewer pixels).
        joint_window_px : int, optional
            Side of the joint window (odd, pixels); 1 codes pixels alone.
        divide_by_coef_norm : bool, optional
            Divide residuals by code norms (Zhang et al.'s regularised residual).
        n_calibration : int, optional
            Labelled pixels, held out from the dictionary, used to fit the fusion/calibration.
        seed : int, optional
            Seed of the sampling.
        feature_names : sequence of str, optional
            Stored for checking and provenance.
        feature_spec : dict, optional
            JSON description of the features, stored in the model file.

        Returns
        -------
        MJCRModel
        """
        fs, ls = _as_scenes(features, labels)
        d = fs[0].shape[0]
        grp = [list(range(d))] if groups is None else [[int(i) for i in g] for g in groups]
        if not grp or any(not g or min(g) < 0 or max(g) >= d for g in grp):
            raise InputMismatchError(f"groups {groups!r} do not index {d} features")
        if joint_window_px < 1 or joint_window_px % 2 == 0:
            raise InputMismatchError(f"joint_window_px must be odd and >= 1, got {joint_window_px}")
        rng = np.random.default_rng(seed)

        # Flat index of every labelled pixel over all scenes.
        sizes = np.array([lab.size for lab in ls])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        flat_labels = np.concatenate([lab.ravel() for lab in ls])
        pos = [np.flatnonzero(flat_labels == c) for c in (0, 1)]
        if any(p.size < 2 for p in pos):
            raise InputMismatchError("training labels need at least 2 road and 2 non-road pixels")
        atoms = [rng.choice(p, size=min(atoms_per_class, p.size // 2), replace=False) for p in pos]
        atom_idx = np.concatenate(atoms)
        atom_lab = np.repeat([0, 1], [a.size for a in atoms])

        def gather(flat_idx: np.ndarray) -> np.ndarray:
            scene = np.searchsorted(offsets, flat_idx, side="right") - 1
            out = np.empty((d, flat_idx.size), np.float32)
            for s in np.unique(scene):
                sel = scene == s
                out[:, sel] = fs[s].reshape(d, -1)[:, flat_idx[sel] - offsets[s]]
            return out

        # Standardisation from a uniform sample of all pixels.
        stat_idx = rng.choice(offsets[-1], size=min(200_000, int(offsets[-1])), replace=False)
        stat = gather(stat_idx).astype(np.float64)
        mean = stat.mean(axis=1)
        std = np.maximum(stat.std(axis=1), 1e-6)

        Xall = (gather(atom_idx) - mean[:, None].astype(np.float32)) / std[:, None].astype(np.float32)
        q_forms, k_forms = [], []
        for g in grp:
            Qg, Kg = cr_residual_forms(_unit_augmented(Xall[g]), atom_lab, lam)
            q_forms.append(Qg)
            k_forms.append(Kg)

        model = cls(
            groups=grp,
            mean=mean,
            std=std,
            residual_forms=q_forms,
            coef_forms=k_forms,
            calib_weights=np.ones(len(grp)),
            calib_intercept=0.0,
            lam=float(lam),
            joint_window_px=int(joint_window_px),
            divide_by_coef_norm=bool(divide_by_coef_norm),
            atoms_per_class=int(atoms_per_class),
            feature_names=list(feature_names or []),
            feature_spec=dict(feature_spec or {}),
        )

        # Calibration pixels: labelled, not atoms, drawn uniformly (keeps the scene prior).
        labelled = np.flatnonzero((flat_labels == 0) | (flat_labels == 1))
        pool = np.setdiff1d(labelled, atom_idx, assume_unique=True)
        cal = np.sort(rng.choice(pool, size=min(n_calibration, pool.size), replace=False))
        cal_scene = np.searchsorted(offsets, cal, side="right") - 1
        margins = np.empty((cal.size, len(grp)))
        for s in np.unique(cal_scene):
            sel = cal_scene == s
            m = model.margins(fs[s]).reshape(len(grp), -1)
            margins[sel] = m[:, cal[sel] - offsets[s]].T
        y = flat_labels[cal]
        if np.unique(y).size < 2:
            raise InputMismatchError("calibration pixels hold a single class; give more labelled pixels")
        from sklearn.linear_model import LogisticRegression  # only training needs scikit-learn (0.7 s to import)

        lr = LogisticRegression(C=1e4, max_iter=1000).fit(margins, y)
        model.calib_weights = lr.coef_[0].astype(np.float64)
        model.calib_intercept = float(lr.intercept_[0])
        return model

    def _check(self, features: np.ndarray) -> np.ndarray:
        F = np.asarray(features)
        if F.ndim != 3 or F.shape[0] != self.n_features:
            raise InputMismatchError(f"MJCR model expects features of shape ({self.n_features}, H, W), got {F.shape}")
        return F

    def margins(self, features: np.ndarray) -> np.ndarray:
        """Per-group joint residual margins ``log(R_nonroad / R_road)``.

        Parameters
        ----------
        features : ndarray, shape (n_features, H, W)

        Returns
        -------
        ndarray, shape (n_groups, H, W), float32
            Positive where the road class represents the neighbourhood better.
        """
        F = self._check(features)
        _, H, W = F.shape
        flat = F.reshape(F.shape[0], -1)
        mean = self.mean.astype(np.float32)
        std = self.std.astype(np.float32)
        n_maps = 4 if self.divide_by_coef_norm else 2
        out = np.empty((len(self.groups), H, W), np.float32)
        for gi, g in enumerate(self.groups):
            maps = np.empty((n_maps, H * W), np.float32)
            forms = self.residual_forms[gi]
            if self.divide_by_coef_norm:
                forms = np.concatenate([forms, self.coef_forms[gi]])
            for start in range(0, H * W, _CHUNK):
                Z = (flat[g, start : start + _CHUNK] - mean[g, None]) / std[g, None]
                norm2 = np.einsum("im,im->m", Z, Z) + 1.0
                maps[:, start : start + _CHUNK] = _augmented_forms(forms, Z) / norm2
            maps = maps.reshape(n_maps, H, W)
            w = self.joint_window_px
            if w > 1:
                maps = ndimage.uniform_filter(maps, size=(1, w, w), mode="reflect")
            num, den = maps[0], maps[1]
            if self.divide_by_coef_norm:
                num = num / np.maximum(maps[2], _EPS)
                den = den / np.maximum(maps[3], _EPS)
            out[gi] = np.log(np.maximum(num, _EPS)) - np.log(np.maximum(den, _EPS))
        return out

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Calibrated road probability of every pixel.

        Parameters
        ----------
        features : ndarray, shape (n_features, H, W)
            Same features (definition, scales, order) as at fit time.

        Returns
        -------
        ndarray, shape (H, W), float32
            p(road) in [0, 1].
        """
        m = self.margins(features)
        z = np.tensordot(self.calib_weights.astype(np.float32), m, axes=1) + np.float32(self.calib_intercept)
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Numeric state, for :func:`geoseg.modelfile.save_model`.

        Returns
        -------
        dict of str to ndarray
            ``mean``, ``std``, ``calib_weights``, and per group ``g``: ``group_<g>``
            (feature indices), ``residual_forms_<g>`` and ``coef_forms_<g>``.
        """
        arrays = {
            "mean": np.asarray(self.mean, np.float64),
            "std": np.asarray(self.std, np.float64),
            "calib_weights": np.asarray(self.calib_weights, np.float64),
        }
        for gi, g in enumerate(self.groups):
            arrays[f"group_{gi}"] = np.asarray(g, np.int64)
            arrays[f"residual_forms_{gi}"] = np.asarray(self.residual_forms[gi], np.float64)
            arrays[f"coef_forms_{gi}"] = np.asarray(self.coef_forms[gi], np.float64)
        return arrays

    def metadata(self) -> dict:
        """JSON-serialisable settings, for :func:`geoseg.modelfile.save_model`.

        Returns
        -------
        dict
            ``kind`` ("mjcr"), ``mjcr_format``, ``n_groups``, ``n_features``, ``lam``,
            ``joint_window_px``, ``divide_by_coef_norm``, ``atoms_per_class``,
            ``calib_intercept``, ``classes``, ``feature_names``, ``feature_spec``.
        """
        return {
            "kind": self.KIND,
            "mjcr_format": self.FORMAT_VERSION,
            "n_groups": len(self.groups),
            "n_features": self.n_features,
            "lam": self.lam,
            "joint_window_px": self.joint_window_px,
            "divide_by_coef_norm": self.divide_by_coef_norm,
            "atoms_per_class": self.atoms_per_class,
            "calib_intercept": self.calib_intercept,
            "classes": ["nonroad", "road"],
            "feature_names": list(self.feature_names),
            "feature_spec": self.feature_spec,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], metadata: dict) -> MJCRModel:
        """Rebuild a model from :meth:`to_arrays` and :meth:`metadata` output.

        Parameters
        ----------
        arrays : dict of str to ndarray
        metadata : dict

        Returns
        -------
        MJCRModel

        Raises
        ------
        ModelFileError
            Wrong kind or format version, missing or inconsistent entries.
        """
        if metadata.get("kind") != cls.KIND:
            raise ModelFileError(f"not an MJCR model (kind={metadata.get('kind')!r})")
        if metadata.get("mjcr_format") != cls.FORMAT_VERSION:
            raise ModelFileError(f"unsupported MJCR format {metadata.get('mjcr_format')!r}")
        try:
            n_groups = int(metadata["n_groups"])
            groups = [arrays[f"group_{g}"].astype(int).tolist() for g in range(n_groups)]
            q = [np.asarray(arrays[f"residual_forms_{g}"], np.float64) for g in range(n_groups)]
            k = [np.asarray(arrays[f"coef_forms_{g}"], np.float64) for g in range(n_groups)]
            model = cls(
                groups=groups,
                mean=np.asarray(arrays["mean"], np.float64),
                std=np.asarray(arrays["std"], np.float64),
                residual_forms=q,
                coef_forms=k,
                calib_weights=np.asarray(arrays["calib_weights"], np.float64),
                calib_intercept=float(metadata["calib_intercept"]),
                lam=float(metadata["lam"]),
                joint_window_px=int(metadata["joint_window_px"]),
                divide_by_coef_norm=bool(metadata["divide_by_coef_norm"]),
                atoms_per_class=int(metadata["atoms_per_class"]),
                feature_names=list(metadata.get("feature_names", [])),
                feature_spec=dict(metadata.get("feature_spec", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"incomplete MJCR model: {exc!r}") from exc
        d = model.n_features
        ok = model.std.shape == (d,) and model.calib_weights.shape == (n_groups,)
        for g, Q, K in zip(groups, q, k):
            D = len(g) + 1
            ok = ok and bool(g) and min(g) >= 0 and max(g) < d and Q.shape == K.shape == (2, D, D)
        if not ok:
            raise ModelFileError("inconsistent MJCR model arrays (shapes do not match)")
        return model
