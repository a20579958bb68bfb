"""The QP interface: the only QP shape the method builds, and what a solver must provide.

Both QPs of GRANSO's method (the steering dual, ALGORITHM.md §7, and the stationarity QP,
§10.3) are small dense convex QPs with box bounds and at most one linear equality::

    minimize   ½ yᵀ Q y + qᵀ y
    subject to lb <= y <= ub,   [ eq_coeffs · y == eq_rhs ]

QPs are solved on the host in float64 NumPy arrays: this is the one explicit device->host
transfer of the solver core (``k``, the number of QP variables, is the number of
constraints or of cached gradients, never ``n``).  ``Q`` is symmetric positive
*semi*-definite, often singular; solvers must cope with that.

Large QPs may come *structured* instead (``docs/large_qps.md``): ``Q = Aᵀ M A`` with ``A`` the
``n x k`` host matrix of gradients (NumPy or ``scipy.sparse``) and ``M`` the ``n x n`` metric
(``None`` = identity).  Then ``Q`` is not stored; reading ``qp.Q`` forms it once (so solvers that
only know dense ``Q`` keep working), while structure-aware solvers
(:mod:`ncvx_ref.qp.lifted`) work with ``A`` and ``M`` and never form it.

A QP may carry a ``guess``: an approximate answer (the stationarity QP's, mapped from the
previous iteration's answer, :mod:`ncvx_ref.warm_start`).  It is only a hint: the library
adapters solve from it first (active-set polishing, certified to a hundredth of the usual
tolerance) and call the library only when that fails; any solver may ignore it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol, runtime_checkable

import numpy as np


class QPSolverError(RuntimeError):
    """A QP solver could not produce an answer (GRANSO's "QP failure", §13)."""


class _DenseQ:
    """``BoxQP.Q``: the stored matrix, or for a structured QP ``Aᵀ M A`` formed on first read."""

    def __get__(self, obj, owner=None):
        if obj is None:  # class access: no default, so ``Q`` stays the first positional field
            raise AttributeError("Q")
        Q = obj.__dict__.get("_Q")
        if Q is None and obj.A is not None:
            Q = obj.dense_Q()
            obj.__dict__["_Q"] = Q
        return Q

    def __set__(self, obj, value) -> None:  # only reached from the generated __init__
        obj.__dict__["_Q"] = value


@dataclass(frozen=True)
class BoxQP:
    """``min ½ yᵀQy + qᵀy  s.t.  lb <= y <= ub  [and eq_coeffs·y == eq_rhs]`` on the host.

    Dense form: ``Q`` given.  Structured form: ``Q=None`` with ``A`` (``n x k``, NumPy or
    ``scipy.sparse``) and ``M`` (``n x n`` SPD NumPy array, a positive float ``c`` for ``c·I``,
    or ``None`` for the identity), meaning
    ``Q = Aᵀ M A``; ``qp.Q`` then forms (and keeps) the dense matrix for dense-only solvers.
    """

    Q: Optional[np.ndarray] = _DenseQ()  # (k, k) float64, symmetric PSD (None: see A, M)
    q: np.ndarray  # (k,)
    lb: np.ndarray  # (k,), finite
    ub: np.ndarray  # (k,), finite
    eq_coeffs: Optional[np.ndarray] = None  # (k,) or None: at most one equality row
    eq_rhs: float = 0.0
    kind: Literal["steering", "stationarity", "other"] = "other"
    A: Any = None  # (n, k) host ndarray or scipy.sparse matrix: Q = Aᵀ M A (structured form)
    M: Any = None  # (n, n) SPD metric of the structured form, a float c (c·I), None = identity
    guess: Optional[np.ndarray] = None  # (k,) approximate answer: a hint, solvers may ignore it

    def __init__(self, Q: Optional[np.ndarray], q: np.ndarray, lb: np.ndarray, ub: np.ndarray,
                 eq_coeffs: Optional[np.ndarray] = None, eq_rhs: float = 0.0,
                 kind: Literal["steering", "stationarity", "other"] = "other", A: Any = None,
                 M: Any = None, guess: Optional[np.ndarray] = None) -> None:
        # The dataclass's own __init__ (kept out: a user-written one takes precedence) sets the
        # frozen fields one object.__setattr__ at a time; the method builds a QP per solve.
        if Q is None and A is None:
            raise ValueError("BoxQP needs either a dense `Q` or the structure `A` (and `M`).")
        self.__dict__.update(_Q=Q, q=q, lb=lb, ub=ub, eq_coeffs=eq_coeffs, eq_rhs=eq_rhs,
                             kind=kind, A=A, M=M, guess=guess)

    @property
    def size(self) -> int:
        return int(self.q.shape[0])

    @property
    def structured(self) -> bool:
        """True when the QP carries ``A`` (and ``M``) and its dense ``Q`` has not been formed."""
        return self.A is not None and self.__dict__.get("_Q") is None

    def without_guess(self) -> "BoxQP":
        """The same QP without its guess (``self`` when it has none); a formed ``Q`` is shared."""
        if self.guess is None:
            return self
        return BoxQP(self.__dict__.get("_Q"), self.q, self.lb, self.ub, self.eq_coeffs,
                     self.eq_rhs, self.kind, self.A, self.M)

    def dense_Q(self) -> np.ndarray:
        """``Q`` as a dense ``k x k`` array: the stored one, or ``Aᵀ(M A)`` symmetrized."""
        Q = self.__dict__.get("_Q")
        if Q is not None:
            return Q
        A = self.A
        M = self.M
        MA = A if M is None else (float(M) * A if np.ndim(M) == 0 else M @ A)
        Q = A.T @ MA
        Q = np.asarray(Q.toarray() if hasattr(Q, "toarray") else Q, dtype=np.float64)
        return (Q + Q.T) / 2

    def __repr__(self) -> str:
        form = "dense" if self.__dict__.get("_Q") is not None else (
            f"structured A {self.A.shape}, M {'I' if self.M is None else np.shape(self.M) or self.M}")
        eq = "" if self.eq_coeffs is None else ", one equality"
        guess = "" if self.guess is None else ", with a guess"
        return f"BoxQP(k={self.size}, {self.kind}, {form}{eq}{guess})"


@runtime_checkable
class QPSolver(Protocol):
    """Anything with ``solve(qp) -> y``; raise :class:`QPSolverError` (or any exception) on failure.

    The answer must be a float64 array of shape ``(k,)``.  The core applies GRANSO's failure
    rule on top (an exception, an empty or non-finite answer counts as a failed QP call).
    """

    name: str

    def solve(self, qp: BoxQP) -> np.ndarray: ...
