"""The test-problem families: stored reference values reproduced, gradients checked, Array API.

Reference data live in ``<repo>/../shared/granso_reference`` (resolved from this file); the
tests that need them are skipped with a message when the folder is absent.
"""
from __future__ import annotations

import dataclasses

from pathlib import Path

import numpy as np
import pytest

from ncvx_ref import problems
from ncvx_ref.conformance.cases import case_paths, load_case
from ncvx_ref.problems import (hock_schittkowski, infeasible, l1_box, maxq, nonsmooth_rosenbrock,
                               qp_ineq, rosenbrock, spectral_radius, sphere_eig, svm_soft_margin)

REF_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "granso_reference"
CASE_PATHS = case_paths(REF_DIR)
needs_reference = pytest.mark.skipif(
    not CASE_PATHS, reason=f"GRANSO reference cases not found at {REF_DIR} (expected "
    "../shared/granso_reference relative to the repository root)")

# Value tolerance against the stored history.  Both sides evaluate the same formulas in double
# precision, so they differ only by rounding: |ours - ref| <= RTOL * max(|ref|, S), where S is
# the largest magnitude of that quantity over the case's history.  The floor S matters when a
# quantity is a cancellation of larger terms (x'x - 1 near the sphere, a margin near 0): its
# rounding error is eps times the terms, not eps times the small result.
VALUE_RTOL = 1e-12
# spectral_radius also depends on LAPACK's eigensolver (README caveats: reproduced to ~4e-12).
VALUE_RTOL_SPECTRAL = 1e-10
# ... and where eigenvalues nearly coalesce (late iterates of a spectral-radius minimization) by
# more: a backward-stable eigensolver returns the exact eigenvalues of M + E, ||E|| ~ N eps ||M||,
# with E depending on the LAPACK build, so two builds can differ by as much as the eigenvalues
# move under such an E (measured: 1.3e-10 scaled at iterate 301 of spectral_rand_N30_default on
# an Intel Xeon's OpenBLAS).  That movement is measured at each iterate with random E of this
# size and allowed SPECTRAL_SENSITIVITY_FACTOR-fold.
SPECTRAL_PERTURBATIONS = 4
SPECTRAL_SENSITIVITY_FACTOR = 10.0
# Evaluating the n = 200 spectral case costs two 200 x 200 eigendecompositions: check every
# SPECTRAL_STRIDE-th stored iterate there (and the last), all iterates everywhere else.
SPECTRAL_STRIDE = 10


def _case_id(path: Path) -> str:
    return path.stem


def _eigen_sensitivity(prob, x, f0, c0, rng) -> dict:
    """Largest change of f and ci (``f0``, ``c0`` at ``x``) of a spectral-radius problem over
    random backward errors E of the eigensolver (||E||_F = N eps ||M||_F) added to A."""
    M = prob.matrix(x)
    size = M.shape[0] * np.finfo(float).eps * np.linalg.norm(M)
    worst = {"f": 0.0, "ci": 0.0}
    for _ in range(SPECTRAL_PERTURBATIONS):
        E = rng.standard_normal(M.shape)
        f, _, c, _ = dataclasses.replace(prob, A=prob.A + E * (size / np.linalg.norm(E))).values_and_grads(x)
        worst = {"f": max(worst["f"], abs(f - f0)), "ci": max(worst["ci"], abs(c - c0))}
    return worst


def _close(ours, ref, scale, rtol, atol=0.0):
    ours, ref = np.asarray(ours, dtype=float).ravel(), np.asarray(ref, dtype=float).ravel()
    assert ours.shape == ref.shape, f"shape {ours.shape} != stored {ref.shape}"
    tol = np.maximum(rtol * np.maximum(np.abs(ref), scale), atol)
    bad = np.abs(ours - ref) > tol
    return (not bad.any()), (np.abs(ours - ref) / np.maximum(np.abs(ref), scale)).max(initial=0.0)


@needs_reference
@pytest.mark.parametrize("path", CASE_PATHS, ids=_case_id)
def test_values_reproduce_reference_history(path):
    case = load_case(path)
    prob = problems.from_case(case)
    h = case["history"]
    spectral = case["family"] == "spectral_radius"
    rtol = VALUE_RTOL_SPECTRAL if spectral else VALUE_RTOL
    ks = list(range(len(h["x"])))
    if spectral and prob.n >= 100:
        ks = sorted(set(ks[::SPECTRAL_STRIDE]) | {ks[-1]})
    scales = {q: max((float(np.max(np.abs(v), initial=0.0)) for v in h[q]), default=0.0)
              for q in ("f", "ci", "ce")}
    rng = np.random.default_rng(0)
    for k in ks:
        ev = prob.evaluate(np.asarray(h["x"][k]))
        atol = {"f": 0.0, "ci": 0.0, "ce": 0.0}
        if spectral:
            moved = _eigen_sensitivity(prob, np.asarray(h["x"][k], dtype=float), float(ev.f),
                                       float(ev.ci[0]), rng)
            atol.update({q: SPECTRAL_SENSITIVITY_FACTOR * v for q, v in moved.items()})
        ok, rel = _close(ev.f, h["f"][k], scales["f"], rtol, atol["f"])
        assert ok, f"{case['id']}: f at stored iterate {k} differs by {rel:.2e} (scaled) > {rtol:g}"
        for q, val, m in (("ci", ev.ci, prob.n_ineq), ("ce", ev.ce, prob.n_eq)):
            if m == 0:
                assert val is None, f"{case['id']}: {q} must be None for a problem without {q}"
                continue
            ok, rel = _close(val, h[q][k], scales[q], rtol, atol[q])
            assert ok, f"{case['id']}: {q} at stored iterate {k} differs by {rel:.2e} (scaled) > {rtol:g}"


@needs_reference
@pytest.mark.parametrize("path", CASE_PATHS, ids=_case_id)
def test_case_metadata_and_layout(path):
    """Sizes, x0 and the GRANSO layout of every returned array."""
    case = load_case(path)
    prob = problems.from_case(case)
    assert (prob.n, prob.n_ineq, prob.n_eq) == (case["n"], case["n_ineq"], case["n_eq"])
    np.testing.assert_array_equal(prob.x0, np.asarray(case["x0"]))
    assert prob.known_optimum == case["known_optimum"]
    ev = prob.evaluate(prob.x0)
    assert np.shape(ev.f) == () and ev.f_grad.shape == (prob.n,)
    if prob.n_ineq:
        assert ev.ci.shape == (prob.n_ineq,) and ev.ci_grad.shape == (prob.n, prob.n_ineq)
    if prob.n_eq:
        assert ev.ce.shape == (prob.n_eq,) and ev.ce_grad.shape == (prob.n, prob.n_eq)


# ----------------------------------------------------------------------------------------------
# Gradients against finite differences, on fresh instances of every family.

def _fresh_problems():
    return [
        rosenbrock.chained(2), rosenbrock.chained(7),
        nonsmooth_rosenbrock.make("max"), nonsmooth_rosenbrock.make("split"),
        qp_ineq.random(8, 5, seed=1), sphere_eig.random(6, seed=2), l1_box.random(5, 9, seed=3),
        maxq.maxq(6), maxq.maxquad_random(5, 3, seed=4),
        hock_schittkowski.hs071(), hock_schittkowski.hs035(),
        infeasible.make("ineq"), infeasible.make("eq"),
        svm_soft_margin.random(8, 3, seed=5), spectral_radius.random(12, 2, 3, seed=6),
    ]


FRESH = _fresh_problems()


def _groups(ev):
    yield "f", np.atleast_1d(np.asarray(ev.f, dtype=float)), np.asarray(ev.f_grad, dtype=float)[:, None]
    if ev.ci is not None:
        yield "ci", np.asarray(ev.ci, dtype=float), np.asarray(ev.ci_grad, dtype=float)
    if ev.ce is not None:
        yield "ce", np.asarray(ev.ce, dtype=float), np.asarray(ev.ce_grad, dtype=float)


@pytest.mark.parametrize("prob", FRESH, ids=lambda p: p.name)
def test_gradients_match_central_differences(prob):
    """Directional derivatives J'v against central differences at random (smooth) points.

    Random points avoid kinks with probability 1; h = 1e-6 (||x|| + 1) makes the central
    difference error ~h^2 (truncation) + eps |value| / h (rounding) ~ 1e-10 relative, so a
    1e-6 relative test separates right from wrong gradients by orders of magnitude.
    """
    rng = np.random.default_rng(123)
    for _ in range(2):
        x = prob.x0 + rng.standard_normal(prob.n) * (0.3 + 0.1 * np.abs(prob.x0))
        h = 1e-6 * (np.linalg.norm(x) + 1.0)
        ev = prob.evaluate(x)
        for _ in range(4):
            v = rng.standard_normal(prob.n)
            v /= np.linalg.norm(v)
            ep, em = prob.evaluate(x + h * v), prob.evaluate(x - h * v)
            for (name, _, J), (_, vp, _), (_, vm, _) in zip(_groups(ev), _groups(ep), _groups(em)):
                fd = (vp - vm) / (2 * h)
                an = J.T @ v
                scale = max(1.0, float(np.max(np.abs(J))))
                assert np.allclose(an, fd, rtol=1e-6, atol=1e-6 * scale), (
                    f"{prob.name}: gradient of {name} disagrees with central differences: "
                    f"analytic {an}, finite-difference {fd}")


# ----------------------------------------------------------------------------------------------
# The subgradient choices FAMILIES.md prescribes at kinks.

def test_nonsmooth_rosenbrock_kink_choices():
    p = nonsmooth_rosenbrock.make("max")
    ev = p.evaluate(np.array([0.0, 0.0]))      # x1^2 - x2 = 0 -> s = +1; sqrt2 x1 = 2 x2 -> first piece
    np.testing.assert_array_equal(ev.f_grad, [0.0 - 2.0, -8.0])
    np.testing.assert_array_equal(ev.ci_grad[:, 0], [np.sqrt(2.0), 0.0])
    ev = p.evaluate(np.array([0.0, 1.0]))      # s = -1, second piece
    np.testing.assert_array_equal(ev.f_grad, [-2.0, 8.0])
    np.testing.assert_array_equal(ev.ci_grad[:, 0], [0.0, 2.0])
    assert float(ev.ci[0]) == 1.0


def test_maxq_and_maxquad_take_first_index_among_ties():
    p = maxq.maxq(3)
    ev = p.evaluate(np.array([-2.0, 2.0, 1.0]))
    assert float(ev.f) == 4.0
    np.testing.assert_array_equal(ev.f_grad, [-4.0, 0.0, 0.0])
    q = maxq.maxquad_random(3, 2, seed=0)
    tie = maxq.MaxQuad(name="tie", n=3, n_ineq=0, n_eq=0, x0=np.zeros(3),
                       Qs=np.stack([np.eye(3), 2 * np.eye(3)]), qs=np.array([[1.0, 0, 0], [0, 1.0, 0]]),
                       cs=np.array([0.0, 0.0]))
    ev = tie.evaluate(np.zeros(3))               # both pieces are 0 at x = 0 -> piece 0
    np.testing.assert_array_equal(ev.f_grad, [1.0, 0.0, 0.0])
    assert q.evaluate(q.x0).f_grad.shape == (3,)


def test_l1_box_sign_zero_drops_the_row():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = l1_box.L1Box(name="t", n=2, n_ineq=4, n_eq=0, x0=np.zeros(2), A=A, b=np.array([0.0, 1.0, 1.0]))
    ev = p.evaluate(np.array([0.0, 0.0]))        # residuals (0, -1, -1): sign (0, -1, -1)
    np.testing.assert_array_equal(ev.f_grad, [-1.0, -2.0])
    np.testing.assert_array_equal(ev.ci_grad, [[1, 0, -1, 0], [0, 1, 0, -1]])


def test_spectral_radius_layout_is_column_major():
    """x = vec(X) column-major: perturbing x[i + j p] must equal perturbing X[i, j]."""
    p = spectral_radius.random(10, 2, 3, seed=9)
    x = np.arange(6, dtype=float) / 10.0
    X = x.reshape(3, 2).T
    np.testing.assert_array_equal(X[1, 2], x[1 + 2 * 2])
    M = p.A + p.B @ X @ p.C
    lam = np.linalg.eigvals(M)
    ev = p.evaluate(x)
    assert float(ev.f) == pytest.approx(lam.imag.max(), rel=1e-12)
    assert float(ev.ci[0]) == pytest.approx(lam.real.max() + 0.1, rel=1e-12)


def test_unknown_family_is_rejected_with_the_known_list():
    with pytest.raises(ValueError, match="known families: rosenbrock"):
        problems.from_case({"id": "x", "family": "nope"})


# ----------------------------------------------------------------------------------------------
# Array API: the same problem in other namespaces returns arrays of that namespace.

def _namespaces():
    out = [("numpy", lambda a: np.asarray(a), 1e-14)]
    try:
        import array_api_strict as xps
        out.append(("array_api_strict", lambda a: xps.asarray(a, dtype=xps.float64), 1e-14))
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch
        out.append(("torch", lambda a: torch.asarray(a, dtype=torch.float64), 1e-14))
    except ImportError:  # pragma: no cover
        pass
    try:
        import jax.numpy as jnp  # float32 unless x64 is enabled: checks dtype propagation
        out.append(("jax", lambda a: jnp.asarray(a, dtype=jnp.float32), 1e-4))
    except ImportError:  # pragma: no cover
        pass
    return out


NAMESPACES = _namespaces()


@pytest.mark.parametrize("ns", NAMESPACES, ids=[n[0] for n in NAMESPACES])
@pytest.mark.parametrize("prob", FRESH, ids=lambda p: p.name)
def test_array_api_namespaces_agree(prob, ns):
    import array_api_compat as aac
    from ncvx_ref.backend import to_host
    name, make, rtol = ns
    x = make(prob.x0 + 0.25)
    ev = prob.evaluate(x)
    ref = prob.evaluate(prob.x0 + 0.25)
    xp = aac.array_namespace(x)
    for field in ("f", "f_grad", "ci", "ci_grad", "ce", "ce_grad"):
        a, r = getattr(ev, field), getattr(ref, field)
        if r is None:
            assert a is None
            continue
        assert aac.array_namespace(a) is xp, f"{prob.name}.{field} left the {name} namespace"
        assert a.dtype == x.dtype, f"{prob.name}.{field} has dtype {a.dtype}, x has {x.dtype}"
        np.testing.assert_allclose(to_host(a), np.asarray(r, dtype=float), rtol=rtol,
                                   atol=rtol * max(1.0, float(np.max(np.abs(r)))))


@pytest.mark.gpu
def test_cuda_torch_evaluation_stays_on_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for prob in FRESH:
        x = torch.asarray(prob.x0, dtype=torch.float64, device="cuda")
        ev = prob.evaluate(x)
        assert ev.f_grad.device.type == "cuda", prob.name
        np.testing.assert_allclose(ev.f_grad.cpu().numpy(), np.asarray(prob.evaluate(prob.x0).f_grad),
                                   rtol=1e-12, atol=1e-12)
