"""Tests of geoseg.road.mjcr."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import InputMismatchError, ModelFileError
from geoseg.road.mjcr import MJCRModel, cr_coefficients, cr_residual_forms, quadratic_form


def _dictionary(seed: int = 0, D: int = 6, n: int = 9):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(D, n))
    X /= np.linalg.norm(X, axis=0)
    labels = np.array([0] * 4 + [1] * (n - 4))
    return rng, X, labels


@pytest.mark.parametrize("n", [4, 9, 30])  # fewer and more atoms than dimensions
def test_coding_equals_regularised_least_squares(n: int) -> None:
    rng, X, _ = _dictionary(1, D=6, n=n)
    Y = rng.normal(size=(6, 3))
    lam = 0.3
    alpha = cr_coefficients(X, Y, lam)
    direct = np.linalg.solve(X.T @ X + lam * np.eye(n), X.T @ Y)
    A = np.vstack([X, np.sqrt(lam) * np.eye(n)])
    lstsq = np.linalg.lstsq(A, np.vstack([Y, np.zeros((n, 3))]), rcond=None)[0]
    np.testing.assert_allclose(alpha, direct, atol=1e-10)
    np.testing.assert_allclose(alpha, lstsq, atol=1e-10)


def test_quadratic_forms_equal_explicit_residuals() -> None:
    rng, X, labels = _dictionary(2, D=6, n=11)
    Y = rng.normal(size=(6, 5))
    lam = 0.05
    Q, K = cr_residual_forms(X, labels, lam)
    alpha = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)
    for c in (0, 1):
        sel = labels == c
        resid = np.sum((Y - X[:, sel] @ alpha[sel]) ** 2, axis=0)
        np.testing.assert_allclose(quadratic_form(Q[c], Y), resid, rtol=1e-9)
        np.testing.assert_allclose(quadratic_form(K[c], Y), np.sum(alpha[sel] ** 2, axis=0), rtol=1e-9)


def _toy_scene(seed: int, H: int = 40, W: int = 40):
    """Two classes with different mean feature directions; road = a band of rows."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((H, W), np.int8)
    lab[15:25] = 1
    centres = np.array([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, 0.5]])
    F = centres[lab].transpose(2, 0, 1) + 0.6 * rng.normal(size=(4, H, W))
    return F.astype(np.float32), lab


@pytest.mark.parametrize("joint", [1, 3])
@pytest.mark.parametrize("divide", [False, True])
def test_toy_two_class_problem(joint: int, divide: bool) -> None:
    F, lab = _toy_scene(0)
    model = MJCRModel.fit(
        F, lab, groups=[[0, 1], [2, 3]], atoms_per_class=100, joint_window_px=joint,
        divide_by_coef_norm=divide, n_calibration=1000,
    )
    Ft, labt = _toy_scene(1)
    p = model.predict_proba(Ft)
    assert p.dtype == np.float32 and p.shape == labt.shape
    assert p.min() >= 0.0 and p.max() <= 1.0
    accuracy = np.mean((p > 0.5) == (labt == 1))
    assert accuracy > (0.95 if joint == 1 else 0.97)
    # Calibration: the mean predicted probability tracks the road fraction (0.25).
    assert abs(p.mean() - 0.25) < 0.05
    # Group 0 separates the classes best, so the fusion trusts it most.
    assert model.calib_weights[0] > max(0.0, model.calib_weights[1])


def test_unlabelled_pixels_are_ignored() -> None:
    F, lab = _toy_scene(3)
    noisy = lab.copy()
    noisy[:5] = -1
    F[:, :5] = 100.0  # garbage under the ignore label must not enter the dictionary
    model = MJCRModel.fit(F, noisy, atoms_per_class=100, joint_window_px=1, n_calibration=800)
    Ft, labt = _toy_scene(4)
    assert np.mean((model.predict_proba(Ft) > 0.5) == (labt == 1)) > 0.9


def test_serialisation_round_trip() -> None:
    F, lab = _toy_scene(5)
    model = MJCRModel.fit(F, lab, groups=[[0, 1], [2, 3]], atoms_per_class=50, n_calibration=500,
                          feature_names=list("abcd"), feature_spec={"scales_px": [1.0]})
    again = MJCRModel.from_arrays(model.to_arrays(), model.metadata())
    np.testing.assert_array_equal(again.predict_proba(F), model.predict_proba(F))
    assert again.feature_names == list("abcd") and again.feature_spec == {"scales_px": [1.0]}
    bad = model.metadata() | {"kind": "rf"}
    with pytest.raises(ModelFileError):
        MJCRModel.from_arrays(model.to_arrays(), bad)
    arrays = model.to_arrays()
    del arrays["residual_forms_1"]
    with pytest.raises(ModelFileError):
        MJCRModel.from_arrays(arrays, model.metadata())


def test_rejects_wrong_feature_count() -> None:
    F, lab = _toy_scene(6)
    model = MJCRModel.fit(F, lab, atoms_per_class=30, n_calibration=300)
    with pytest.raises(InputMismatchError):
        model.predict_proba(F[:3])


def test_a_scene_classified_in_strips_equals_it_classified_whole(monkeypatch) -> None:
    """Strips of rows (bounded feature memory) read the rows their features reach: the same probabilities."""
    import geoseg.classifiers.mjcr as classifier_module
    from geoseg.classifiers.mjcr import MJCRClassifier
    from geoseg.raster import read_raster
    from tests.conftest import SAMPLE_DATA

    model = MJCRClassifier.load(str(SAMPLE_DATA / "roads.mjcr.npz"))
    scene = read_raster(SAMPLE_DATA / "scene_a.tif")
    image, gsd = scene.array[:, :300, :200], scene.geo.gsd_m
    selected = model.select_bands(image)
    sums, count = model.channel_sums(selected, gsd, np.ones(selected.shape[1:], bool), (slice(None), slice(None)))
    whole = model.model.predict_proba(model.features(selected, gsd, (sums / count).astype(np.float32)))
    monkeypatch.setattr(classifier_module, "STRIP_BYTES", 1)  # strips of 16 reaches: several strips over 300 rows
    reach = model.halo_px(gsd) + int(np.ceil(2 * model.gradient_sigma_m / gsd)) + 1
    assert 16 * reach < 300
    strips = model.predict_proba(image, gsd)
    assert np.abs(strips - whole).max() < 1e-5
