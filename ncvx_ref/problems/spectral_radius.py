"""Spectral abscissa/imaginary-part optimization of ``A + B X C`` (FAMILIES.md §10), GRANSO example 4.

NumPy-only computation: the eigen-decompositions run on the host with ``numpy.linalg.eig``
(LAPACK ``geev``, as Octave's ``eig``); inputs of other namespaces are copied to the host and
the results copied back to ``x``'s namespace, dtype and device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..backend import to_host
from ..evaluation import Evaluation
from ._base import TestProblem, as_float_vector, like


def _eig_gradient(mus: np.ndarray, W: np.ndarray, lam: complex, v: np.ndarray,
                  B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """d lambda / d X (p x m, complex) for a simple eigenvalue ``lam`` of M with right vector v.

    ``mus, W = eig(M^T)``. The left eigenvector u (u^H M = lam u^H) is the eigenvector w of
    M^T whose eigenvalue mu has conj(mu) closest to lam (first index among ties): then u = w,
    and d lambda / dX = (B^T conj(u)) (C v)^T / (u^H v), independent of the vectors' scalings.
    """
    k = int(np.argmin(np.abs(np.conj(mus) - lam)))
    u = W[:, k]
    return np.outer(B.T @ np.conj(u), C @ v) / np.vdot(u, v)


@dataclass(frozen=True, eq=False)
class SpectralRadius(TestProblem):
    """x = vec(X) (column-major, X is p x m); ``f = max Im eig(A + BXC)``,
    ``ci = max Re eig(A + BXC) + stability_margin``."""

    A: Optional[np.ndarray] = None
    B: Optional[np.ndarray] = None
    C: Optional[np.ndarray] = None
    stability_margin: float = 0.0

    def matrix(self, xh: np.ndarray) -> np.ndarray:
        """``A + B X C`` at a host float64 vector ``xh`` (X[i, j] = x[i + j p])."""
        p, m = self.B.shape[1], self.C.shape[0]
        return self.A + self.B @ xh.reshape(m, p).T @ self.C

    def values_and_grads(self, xh: np.ndarray):
        """(f, grad f, ci, grad ci) at a host float64 vector ``xh`` (NumPy)."""
        M = self.matrix(xh)
        lams, V = np.linalg.eig(M)
        jf = int(np.argmax(lams.imag))             # first index among ties
        jc = int(np.argmax(lams.real))
        mus, W = np.linalg.eig(M.T)                # left vectors, shared by both gradients
        Gf = _eig_gradient(mus, W, lams[jf], V[:, jf], self.B, self.C)
        Gc = Gf if jc == jf else _eig_gradient(mus, W, lams[jc], V[:, jc], self.B, self.C)
        f = float(lams[jf].imag)
        ci = float(lams[jc].real) + self.stability_margin
        return f, Gf.imag.T.reshape(-1), ci, Gc.real.T.reshape(-1)   # vec = column-major

    def kink_arguments(self, x) -> np.ndarray:
        """Gaps between the selected eigenvalue's Im (f) / Re (ci) and the runner-up (0 = a tie).

        Conjugate pairs share their real part exactly, so the Re gap of a complex maximizer is
        taken to the best eigenvalue outside its pair.
        """
        lam = np.linalg.eigvals(self.matrix(np.asarray(x, dtype=float)))
        im = np.sort(lam.imag)
        re = lam.real
        jc = int(np.argmax(re))
        others = np.abs(lam - np.conj(lam[jc])) > 1e-12 * max(1.0, abs(lam[jc]))
        others[jc] = False
        gap_re = re[jc] - re[others].max() if others.any() else np.inf
        return np.asarray([im[-1] - im[-2], gap_re])

    def evaluate(self, x) -> Evaluation:
        self._check(x)
        f, gf, ci, gc = self.values_and_grads(to_host(x))
        return Evaluation(f=like(np.asarray(f), x), f_grad=like(gf, x), ci=like(np.asarray([ci]), x),
                          ci_grad=like(gc.reshape(self.n, 1), x))


def _make(name, A, B, C, margin, x0, known_optimum=None) -> SpectralRadius:
    A, B, C = (np.asarray(v, dtype=np.float64) for v in (A, B, C))
    N, p, m = A.shape[0], B.shape[1], C.shape[0]
    if A.shape != (N, N) or B.shape != (N, p) or C.shape != (m, N):
        raise ValueError(f"spectral_radius data shapes disagree: A {A.shape}, B {B.shape}, C {C.shape}; "
                         "expected (N,N), (N,p), (m,N).")
    n = p * m
    return SpectralRadius(name=name, n=n, n_ineq=1, n_eq=0, x0=as_float_vector(x0, n, "x0"),
                          known_optimum=known_optimum, A=A, B=B, C=C, stability_margin=float(margin))


def from_case(case: dict) -> SpectralRadius:
    pr = case["problem"]
    return _make(case["id"], pr["A"], pr["B"], pr["C"], pr["stability_margin"], case["x0"],
                 case.get("known_optimum"))


def random(N: int, p: int, m: int, seed: int, margin: float = 0.1) -> SpectralRadius:
    """A fresh instance: ``A = G/sqrt(N) - 0.8 I``, B and C standard normal, x0 = 0."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N, N)) / np.sqrt(N) - 0.8 * np.eye(N)
    B = rng.standard_normal((N, p))
    C = rng.standard_normal((m, N))
    return _make(f"spectral_N{N}_p{p}_m{m}_s{seed}", A, B, C, margin, np.zeros(p * m))
