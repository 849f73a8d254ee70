"""Metric maths against direct NumPy/SciPy/scikit-image computations, the FID network's layout,
and the domain classifier."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cyclekit.metrics import fid as fidm
from cyclekit.metrics.paired import l1, paired_metrics, psnr, ssim


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: one thread is as fast as two, and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gaussian_samples(rng, mu, cov, n):
    return rng.multivariate_normal(mu, cov, size=n)


def _random_cov(rng, d, scale=1.0):
    a = rng.normal(size=(d, d)) * scale
    return a @ a.T / d + 0.1 * np.eye(d)


# --------------------------------------------------------------------------- Fréchet distance
def test_frechet_matches_scipy_sqrtm_on_known_gaussians():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) + 1.0
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d, 2.0)
    # The closed form on the true parameters (pytorch-fid's formula with scipy's sqrtm).
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                     - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2).real))
    assert fidm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    # And from samples: the statistics the function fits are the plain NumPy mean / covariance.
    x, y = _gaussian_samples(rng, mu1, s1, 4000), _gaussian_samples(rng, mu2, s2, 4000)
    m1, c1 = x.mean(0), np.cov(x, rowvar=False)
    m2, c2 = y.mean(0), np.cov(y, rowvar=False)
    direct = float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy_linalg.sqrtm(c1 @ c2).real))
    assert fidm.fid_from_features(x, y) == pytest.approx(direct, rel=1e-8)
    assert fidm.fid_from_features(x, y) == pytest.approx(expected, rel=0.1)  # sampling error only


def test_frechet_one_dimensional_closed_form():
    # 1-d Gaussians: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s.
    assert fidm.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_fid_of_identical_sets_is_zero_even_when_singular():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(10, 64))  # fewer samples than dimensions: singular covariance
    assert fidm.fid_from_features(f, f) == pytest.approx(0.0, abs=1e-7)
    g = rng.normal(size=(12, 64)) + 0.5
    assert fidm.fid_from_features(f, g) > 1.0
    # The N < D shortcut (data matrices) equals the D x D covariance computation.
    assert fidm.fid_from_features(f, g) == pytest.approx(
        fidm.frechet_distance(*fidm.feature_stats(f), *fidm.feature_stats(g)), rel=1e-6)


def test_fid_few_samples_matches_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(30, 20)), rng.normal(loc=0.3, scale=1.5, size=(25, 20))
    m1, c1, m2, c2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    direct = float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy_linalg.sqrtm(c1 @ c2).real))
    assert fidm.fid_from_features(x, y) == pytest.approx(direct, rel=1e-6)
    assert fidm.fid_from_features(x[:5], y[:7]) == pytest.approx(
        fidm.frechet_distance(*fidm.feature_stats(x[:5]), *fidm.feature_stats(y[:7])), rel=1e-6)


def test_feature_stats_needs_two_samples():
    with pytest.raises(ValueError):
        fidm.feature_stats(np.zeros((1, 3)))


# --------------------------------------------------------------------------- KID
def _mmd2_direct(x, y):
    """Unbiased MMD^2 with the cubic polynomial kernel, by explicit double loops."""
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_direct_computation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 5))
    y = rng.normal(loc=0.7, size=(12, 5))
    mean, std, m = fidm.kid(x, y, n_subsets=3, subset_size=100, seed=0)
    assert m == 12
    assert mean == pytest.approx(_mmd2_direct(x, y), rel=1e-10)  # every subset is the whole set
    assert std == pytest.approx(0.0, abs=1e-12)
    # Subsets: the same seed replays the same subsets; each equals the direct value on its subset.
    mean_a, _, _ = fidm.kid(x, y, n_subsets=5, subset_size=6, seed=3)
    mean_b, _, _ = fidm.kid(x, y, n_subsets=5, subset_size=6, seed=3)
    assert mean_a == mean_b
    r = np.random.default_rng(3)
    direct = []
    for _ in range(5):
        ix, iy = r.choice(12, 6, replace=False), r.choice(12, 6, replace=False)
        direct.append(_mmd2_direct(x[ix], y[iy]))
    assert mean_a == pytest.approx(np.mean(direct), rel=1e-10)


def test_kid_on_known_gaussians_is_unbiased():
    rng = np.random.default_rng(4)
    same = [fidm.kid(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), n_subsets=1, subset_size=50)[0]
            for _ in range(40)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3  # ~0 for equal distributions
    shifted = fidm.kid(rng.normal(size=(200, 4)), rng.normal(loc=1.0, size=(200, 4)), n_subsets=10, subset_size=100)
    assert shifted[0] > 0.1


# --------------------------------------------------------------------------- paired metrics
def test_ssim_matches_skimage_and_psnr_l1_match_numpy():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.random((40, 36, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1).astype(np.float32)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1, channel_axis=2)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
    assert l1(a, b) == pytest.approx(np.abs(a.astype(np.float64) - b).mean(), rel=1e-9)
    m = paired_metrics(a, a)
    assert m["ssim"] == pytest.approx(1.0) and m["l1"] == 0.0 and m["psnr"] == 100.0


# --------------------------------------------------------------------------- Inception FID network
def test_inception_state_dict_layout_matches_pytorch_fid():
    from cyclekit.metrics.inception import FIDInceptionV3

    sd = FIDInceptionV3().state_dict()
    # Keys and shapes of pytorch-fid's pt_inception-2015-12-05 file (torchvision Inception3 names,
    # 1008 classes, no AuxLogits).
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_1a_3x3.bn.running_var": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3), "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7), "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048), "fc.bias": (1008,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith("AuxLogits") for k in sd)
    # torchvision's inception_v3 has 27,161,264 parameters with AuxLogits (3,326,696) and a 1000-class
    # fc (2,049,000); the FID graph has no AuxLogits and a 1008-class fc.
    n_params = sum(p.numel() for p in FIDInceptionV3().parameters())
    assert n_params == 27_161_264 - 3_326_696 - 2_049_000 + 2048 * 1008 + 1008


def test_inception_weights_file_loads_strictly_and_extracts(tmp_path, tiny_world):
    from cyclekit.errors import CheckpointError
    from cyclekit.metrics.evaluate import EvalOptions, Evaluator
    from cyclekit.metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()
    # An old-style file: no num_batches_tracked, as saved by pytorch-fid's conversion.
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / fidm.FID_WEIGHT_FILES[0]
    torch.save(sd, path)
    ext = fidm.InceptionFeatures(path, batch_size=2)
    x = torch.rand(2, 1, 40, 40) * 2 - 1  # grayscale, any size
    f = ext(x)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert ext.name == fidm.INCEPTION_LABEL
    # Through the evaluation: the standard label travels with the numbers.
    ev = Evaluator(tiny_world, 3, 3, EvalOptions(features="inception", fid_weights=str(path), classifier=False,
                                                 max_images=2, kid_subsets=3))
    res = ev.evaluate(lambda t: t.flip(-1), lambda t: t.flip(-1))
    assert res["feature_extractor"] == {"name": "inception-v3 (standard FID)", "dim": 2048, "weights": str(path)}
    assert res["metrics"]["fid_AtoB"] >= 0 and "kid_BtoA" in res["metrics"] and not ev.notes
    bad = dict(sd)
    bad.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        fidm.InceptionFeatures(tmp_path / "bad.pth")


def test_fid_weights_lookup_and_fallback(tmp_path, monkeypatch):
    from cyclekit.errors import ConfigError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fidm.WEIGHTS_ENV, raising=False)
    path, searched = fidm.find_fid_weights()
    assert path is None and any("checkpoints" in str(s) for s in searched)
    with pytest.raises(ConfigError, match="--fid-weights"):
        fidm.find_fid_weights(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="not found"):
        fidm.pick_extractor("inception", None, classifier=None)
    ext, note = fidm.pick_extractor("auto", None, classifier=None)
    assert ext is None and "skipped" in note
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / fidm.FID_WEIGHT_FILES[0]).write_bytes(b"x")
    assert fidm.find_fid_weights()[0] == hub / fidm.FID_WEIGHT_FILES[0]


# --------------------------------------------------------------------------- classifier
def test_domain_classifier_is_deterministic_and_separates_domains(tmp_path):
    from cyclekit.io.images import save_image
    from cyclekit.metrics.classifier import train_domain_classifier

    rng = np.random.default_rng(0)
    for d, base in (("A", (0.8, 0.2, 0.2)), ("B", (0.2, 0.3, 0.8))):
        for i in range(20):
            img = np.clip(np.array(base) + rng.normal(scale=0.15, size=(24, 24, 3)), 0, 1)
            save_image(tmp_path / d / f"{i}.png", img.astype(np.float32))
    state = torch.get_rng_state()
    kw = dict(channels=3, size=16, steps=40, batch_size=16, seed=1)
    c1 = train_domain_classifier(tmp_path / "A", tmp_path / "B", **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    c2 = train_domain_classifier(tmp_path / "A", tmp_path / "B", **kw)
    for (k, v), v2 in zip(c1.net.state_dict().items(), c2.net.state_dict().values()):
        assert torch.equal(v, v2), k
    assert c1.info.heldout_images == 8 and c1.info.heldout_accuracy == 1.0
    assert not c1.info.trustworthy  # 8 held-out images are too few to trust
    x = torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1).expand(2, 3, 30, 30) * 2 - 1
    assert (c1.prob_B(x) < 0.5).all()
    assert c1.features(x).shape == (2, c1.feature_dim)
