"""Inverse-Hessian approximations of the penalty function (ALGORITHM.md §11).

:class:`BFGSInverseHessian` (full memory, ``limited_mem_size = 0``) and
:class:`LBFGSInverseHessian` share one narrow interface: ``apply(V)`` (``V`` is ``(n,)`` or
``(n, k)``), ``update(s, y, sty, damped) -> code`` and ``state()`` (GRANSO's ``H_final``).
Update codes: 0 updated, 1 updated without scaling, 2 skipped (``sᵀy <= 0``), 3 skipped
(inf/NaN).  :func:`damp` is GRANSO's damping rule (§11.3), applied before ``update``.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

from .backend import Backend
from .result import BFGSCounts

Array = Any

UPDATED, UPDATED_UNSCALED, SKIPPED_STY, SKIPPED_INFNAN = 0, 1, 2, 3


class _Counters:
    def __init__(self) -> None:
        self.requests = self.updates = self.damped_requests = self.damped_updates = 0
        self.scaling_skips = self.sty_fails = self.infnan_fails = 0

    def freeze(self) -> BFGSCounts:
        return BFGSCounts(self.requests, self.updates, self.damped_requests, self.damped_updates,
                          self.scaling_skips, self.sty_fails, self.infnan_fails)


def damp(s: Array, y: Array, sty: float, Hs: Array, delta: float, backend: Backend
         ) -> Tuple[Array, float, bool]:
    """GRANSO's damping (§11.3): Powell's rule with the *inverse* approximation ``H`` (``Hs = H s``)."""
    sHs = backend.dot(s, Hs)
    if sty < delta * sHs:
        theta = ((1 - delta) * sHs) / (sHs - sty)
        return theta * y + (1 - theta) * Hs, theta * sty + (1 - theta) * sHs, True
    return y, sty, False


class BFGSInverseHessian:
    """Full-memory inverse BFGS with first-update scaling (§11.2).

    Until the first real update ``H`` may be a scaled identity (GRANSO's sparse identity ``H0``),
    held as a scalar, so nothing ``n x n`` exists before it is needed.  ``is_initial_sparse``
    tells the regularization step to skip work while ``H`` is still the (sparse) ``H0`` (§19.11).
    """

    def __init__(self, n: int, backend: Backend, H0: Optional[Array] = None, scaleH0: bool = True,
                 H0_is_sparse: bool = True):
        self._b = backend
        self.n = n
        self._gamma_identity: Optional[float] = 1.0 if H0 is None else None
        self._H = H0
        self.is_initial_sparse = H0_is_sparse
        self._scale_pending = scaleH0
        self.counts = _Counters()

    @property
    def identity_scale(self) -> Optional[float]:
        """``γ`` while ``H`` is still the scaled identity ``γ I`` (nothing ``n x n`` formed), else None."""
        return self._gamma_identity if self._H is None else None

    @property
    def dense(self) -> Array:
        """``H`` as a dense ``n x n`` array (materializes a scaled identity)."""
        if self._H is None:
            return self._gamma_identity * self._b.eye(self.n)
        return self._H

    def apply(self, V: Array) -> Array:
        if self._H is None:
            return V if self._gamma_identity == 1.0 else self._gamma_identity * V
        return self._H @ V

    def update(self, s: Array, y: Array, sty: float, damped: bool) -> int:
        c = self.counts
        c.requests += 1
        c.damped_requests += int(damped)
        if sty <= 0:  # (a NaN sty goes on and is caught by the inf/NaN test, as in GRANSO)
            c.sty_fails += 1
            return SKIPPED_STY
        b = self._b
        code = UPDATED
        if self._scale_pending:
            gamma = sty / b.dot(y, y) if b.dot(y, y) != 0 else math.inf
            if math.isinf(gamma) or math.isnan(gamma):
                code = UPDATED_UNSCALED
                c.scaling_skips += 1
            elif self._H is None:
                self._gamma_identity *= gamma
            else:
                self._H = gamma * self._H
            self._scale_pending = False
        rho = 1.0 / sty
        Hy = self.apply(y)
        u = rho * Hy
        yHy = b.dot(y, Hy)
        kappa = max(rho * rho * yHy + rho, 0.0)
        w = math.sqrt(kappa) * s
        H_new = _bfgs_matrix(self.dense, u, s, w, b)
        if H_new is None:
            c.infnan_fails += 1
            return SKIPPED_INFNAN
        self._H = H_new
        self._gamma_identity = None
        self.is_initial_sparse = False
        c.updates += 1
        c.damped_updates += int(damped)
        return code

    def state(self) -> Array:
        return self.dense


_BLOCK_ELEMENTS = 1 << 20  # rows per block * n: bounds the temporaries of the blocked update


def _bfgs_matrix(H, u, s, w, backend: Backend):
    """``H − (Mᵀ + M) + w wᵀ`` with ``M = u sᵀ`` (§11.2), or None if it has an inf/NaN.

    Elementwise this is ``(H_ij − (u_j s_i + u_i s_j)) + w_i w_j`` — the exact arithmetic of the
    spec.  On NumPy it is computed in row blocks into one new ``n x n`` array, so no other
    ``n x n`` temporary exists (GRANSO's form needs about five); other namespaces use the
    direct expression.
    """
    import numpy as np

    if not isinstance(H, np.ndarray):
        M = u[:, None] * s[None, :]
        out = H - (M.T + M) + w[:, None] * w[None, :]
        return out if backend.all_finite(out) else None
    n = H.shape[0]
    out = np.empty_like(H)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        block = out[i0:i1]
        np.multiply(s[i0:i1, None], u[None, :], out=block)  # (Mᵀ)_ij = u_j s_i
        block += u[i0:i1, None] * s[None, :]  # + M_ij = u_i s_j
        np.subtract(H[i0:i1], block, out=block)
        block += w[i0:i1, None] * w[None, :]
        if not np.isfinite(block).all():
            return None
    return out


class LBFGSInverseHessian:
    """Limited-memory inverse BFGS with at most ``m`` pairs, oldest first (§11.4)."""

    def __init__(self, n: int, m: int, backend: Backend, H0: Optional[Array] = None,
                 scaleH0: bool = True, fixed_scaling: bool = True, warm_start: Optional[dict] = None):
        self._b = backend
        self.n, self.m = n, m
        self._H0 = H0  # None = identity
        self._S: List[Array] = []
        self._Y: List[Array] = []
        self._rho: List[float] = []
        self.gamma = 1.0
        self._update_gamma = scaleH0
        self._fixed_scaling = fixed_scaling
        self.counts = _Counters()
        self.is_initial_sparse = True
        if warm_start is not None:
            self._load(warm_start)

    def _load(self, ws: dict) -> None:
        S, Y = self._b.asarray(ws["S"]), self._b.asarray(ws["Y"])
        rho = [float(r) for r in _flat_list(ws["rho"])]
        c = min(int(S.shape[1]), self.m)
        self._S = [S[:, j] for j in range(c)]
        self._Y = [Y[:, j] for j in range(c)]
        self._rho = rho[:c]
        self.gamma = float(ws["gamma"])

    @property
    def pairs(self) -> int:
        return len(self._S)

    def apply(self, V: Array) -> Array:
        vector = len(V.shape) == 1
        Q = V[:, None] if vector else V
        alphas = []
        for s, y, rho in zip(reversed(self._S), reversed(self._Y), reversed(self._rho)):
            a = rho * (s @ Q)  # (k,)
            Q = Q - y[:, None] * a[None, :]
            alphas.append(a)
        R = self.gamma * (Q if self._H0 is None else self._H0 @ Q)
        for s, y, rho, a in zip(self._S, self._Y, self._rho, reversed(alphas)):
            beta = rho * (y @ R)
            R = R + s[:, None] * (a - beta)[None, :]
        return R[:, 0] if vector else R

    def update(self, s: Array, y: Array, sty: float, damped: bool) -> int:
        c = self.counts
        b = self._b
        c.requests += 1
        c.damped_requests += int(damped)
        if sty <= 0:
            c.sty_fails += 1
            return SKIPPED_STY
        if not (b.all_finite(s) and b.all_finite(y)):
            c.infnan_fails += 1
            return SKIPPED_INFNAN
        rho = 1.0 / sty
        code = UPDATED
        if self._update_gamma:
            yy = b.dot(y, y)
            gamma = 1.0 / (rho * yy) if rho * yy != 0 else math.inf
            if math.isinf(gamma) or math.isnan(gamma):
                code = UPDATED_UNSCALED
                c.scaling_skips += 1
            else:
                self.gamma = gamma
                if self._fixed_scaling:
                    self._update_gamma = False
        if len(self._S) == self.m:
            del self._S[0], self._Y[0], self._rho[0]
        self._S.append(s)
        self._Y.append(y)
        self._rho.append(rho)
        c.updates += 1
        c.damped_updates += int(damped)
        return code

    def state(self) -> dict:
        """GRANSO's L-BFGS ``H_final``: ``S``, ``Y`` (``n x c``, oldest first), ``rho``, ``gamma``."""
        xp = self._b.xp
        if self._S:
            S, Y = xp.stack(self._S, axis=1), xp.stack(self._Y, axis=1)
        else:
            S = Y = self._b.zeros((self.n, 0))
        return {"S": S, "Y": Y, "rho": self._b.asarray(self._rho) if self._rho else self._b.zeros((0,)),
                "gamma": self.gamma}


def _flat_list(a) -> list:
    if hasattr(a, "tolist"):
        out = a.tolist()
    else:
        out = list(a)
    flat = []
    for v in out if isinstance(out, list) else [out]:
        flat.extend(v if isinstance(v, list) else [v])
    return flat
