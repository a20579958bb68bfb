"""The approximate-stationarity measure (ALGORITHM.md §10): the smallest element, in the
``H_QP`` metric, of the convex hull of penalty subgradients sampled at nearby iterates.

:class:`NeighbourhoodCache` keeps the last ``ngrad`` gradient samples with triangle-inequality
distance estimates; :func:`stationarity` builds and solves the stationarity QP with GRANSO's
fallbacks (identity metric, then eigenvalue clipping).

Backends that compile every operation once per array shape (JAX, see
:func:`compiles_per_shape`) would compile anew each time the number of samples in the
neighbourhood reaches a new value, and keep every compiled kernel: memory would grow for
hundreds of iterations.  For them the gradient matrix is built in chunks of a fixed number of
samples (:data:`FIXED_SHAPE_CHUNK`, zero samples filling the last chunk), so every device
operation sees the same shapes for the whole run; the ``Q`` blocks are assembled on the host.
NumPy and the other eager backends use one matrix of the samples present.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import array_api_compat as aac
import numpy as np

from .backend import Backend, to_host
from .penalty import PenaltyPoint
from .qp.interface import BoxQP, QPSolverError
from .qp.lifted import host_gradients, host_metric, wants_structure
from .warm_start import StationarityWarmStart

Array = Any


#: samples per chunk of the gradient matrix on fixed-shape backends (or the cache capacity, if
#: smaller): at most this many zero samples of padding, and ``(l / chunk)²`` small ``Q`` blocks
FIXED_SHAPE_CHUNK = 5

#: repeated gradient columns are merged (:class:`MergedColumns`) when the full stationarity QP
#: would have at least this many variables.  It was 200 until the tenth session, to keep small
#: QPs in GRANSO's exact variables; merging them too left the conformance summary unchanged
#: (two rows moved, both after their documented departures) and made the QPs of problems with
#: linear constraints cheaper (qp_n10_m5: k = 120 -> 25, 5.8 -> 2.8 ms/iter; svm_N40 and
#: l1box_n20_m30 about 25% less time per iteration; docs/qp_solvers.md)
MERGE_MIN_K = 2


def compiles_per_shape(xp) -> bool:
    """Whether the namespace compiles each eager operation once per new array shape (JAX).

    Such a backend keeps every compiled kernel (a few MiB each) for the rest of the process, so
    arrays whose shape changes from iteration to iteration make the memory grow.
    """
    return aac.is_jax_namespace(xp)


@dataclass(frozen=True)
class GradientSample:
    """The raw gradients at one cached point (recombined with the current ``mu`` in the QP)."""

    x: Array
    f_grad: Array
    ci_grad: Optional[Array]
    ce_grad: Optional[Array]


class NeighbourhoodCache:
    """GRANSO's ``ngrad``-slot gradient cache with accumulated distance estimates (§10.2).

    With ``exact_distances=False`` (default) an estimate that exceeds ``evaldist`` is replaced
    by the *norm of the cached point* — GRANSO 1.6.4's bug, kept so its iterates' stationarity
    values are reproduced.  ``exact_distances=True`` uses the true distance ``‖x − z_j‖``.
    """

    def __init__(self, capacity: int, evaldist: float, backend: Backend, exact_distances: bool = False):
        self.capacity = capacity
        self.evaldist = evaldist
        self._b = backend
        self.exact = exact_distances
        self._samples: List[Optional[GradientSample]] = [None] * capacity
        self._dist = [math.inf] * capacity
        self._norms: List[Optional[float]] = [None] * capacity  # memoized ‖z_j‖
        self._filled = 0
        self._last = -1
        self._zero: Optional[GradientSample] = None

    def zero_sample(self, like: GradientSample) -> GradientSample:
        """A sample with all-zero gradients shaped like ``like`` (padding on fixed-shape backends)."""
        if self._zero is None:
            zeros = self._b.zeros
            self._zero = GradientSample(
                like.x, zeros(tuple(like.f_grad.shape)),
                None if like.ci_grad is None else zeros(tuple(like.ci_grad.shape)),
                None if like.ce_grad is None else zeros(tuple(like.ce_grad.shape)))
        return self._zero

    def add_and_query(self, sample: GradientSample) -> List[GradientSample]:
        b = self._b
        if self._last < 0:
            self._filled, self._last = 1, 0
        else:
            h = b.norm(sample.x - self._samples[self._last].x)
            self._dist[self._last] = 0.0
            for j in range(self._filled):
                self._dist[j] += h
                if self._dist[j] > self.evaldist and math.isfinite(self._dist[j]):
                    self._dist[j] = self._refreshed_distance(j, sample.x)
            if self._filled < self.capacity:
                self._filled += 1
                self._last = self._filled - 1
            else:
                self._last = (self._last + 1) % self.capacity
        self._samples[self._last] = sample
        self._dist[self._last] = 0.0
        self._norms[self._last] = None
        return [self._samples[j] for j in range(self._filled) if self._dist[j] <= self.evaldist]

    def _refreshed_distance(self, j: int, x: Array) -> float:
        if self.exact:
            return self._b.norm(x - self._samples[j].x)
        if self._norms[j] is None:
            self._norms[j] = self._b.norm(self._samples[j].x)
        return self._norms[j]


@dataclass(frozen=True)
class StationarityResult:
    vec: Array  # the stationarity vector d (the H_QP-scaled smallest convex-combination element)
    value: float  # ‖d‖₂
    n_qp: int  # attempt that succeeded (0: smooth shortcut; 1, 2, 4; 4 with inf value: all failed)
    n_samples: int


def stationarity(pt: PenaltyPoint, cache: NeighbourhoodCache, apply_Hqp: Callable[[Array], Array],
                 qp_solver, opt_tol: float, backend: Backend,
                 apply_each: Optional[Callable[[List[Array]], List[Array]]] = None,
                 implicit: Optional[Callable[[List[Array]], Any]] = None,
                 warm_start: Optional[StationarityWarmStart] = None) -> StationarityResult:
    """§10.1: the smooth shortcut, else the termination QP over the cached neighbourhood.

    ``apply_each``: ``H_QP``'s memoizing product of several arrays (``QPMetric.apply_each``):
    the samples' gradients are then multiplied one by one, each known product reused.
    ``implicit``: ``H_QP A`` held implicitly (``QPMetric.implicit``), used instead when given.
    ``warm_start``: the run's memory of its latest QP answer (:mod:`ncvx_ref.warm_start`):
    the QP gets the guess it makes, and the answer is remembered.
    """
    s = backend.norm(pt.p_grad)
    if s <= opt_tol:
        return StationarityResult(pt.p_grad, s, 0, 1)
    current = GradientSample(pt.x, pt.f_grad, pt.ci_grad, pt.ce_grad)
    samples = cache.add_and_query(current)
    warm = None if warm_start is None else _Warm(warm_start, samples)
    if compiles_per_shape(backend.xp):
        size = min(cache.capacity, FIXED_SHAPE_CHUNK)
        padded = samples + [cache.zero_sample(samples[0])] * (-len(samples) % size)
        chunks = [padded[i:i + size] for i in range(0, len(padded), size)]
        vec, n_qp = _termination_qp(pt, samples, apply_Hqp, qp_solver, backend, chunks, warm=warm)
    else:
        merged = merge_repeated_columns(pt, samples, current, backend)
        if merged is None:
            vec, n_qp = _termination_qp(pt, samples, apply_Hqp, qp_solver, backend,
                                        apply_each=apply_each, implicit=implicit, warm=warm)
        else:
            vec, n_qp = _termination_qp_merged(pt, merged, apply_Hqp, qp_solver, backend, warm)
    return StationarityResult(vec, backend.norm(vec), n_qp, len(samples))


@dataclass(frozen=True)
class _Warm:
    """The run's :class:`StationarityWarmStart` bound to one QP's samples."""

    memory: StationarityWarmStart
    samples: List[GradientSample]

    def guess(self, pt: PenaltyPoint) -> Optional[np.ndarray]:
        """The guess for this QP (§10.3's layout), or None."""
        return self.memory.guess(self.samples, *_constraint_counts(pt), pt.mu)

    def remember(self, pt: PenaltyPoint, y: Optional[np.ndarray]) -> None:
        """Keep this QP's answer (§10.3's layout); None (every attempt failed) forgets."""
        if y is None:
            self.memory.clear()
        else:
            self.memory.remember(self.samples, y, *_constraint_counts(pt), pt.mu)


def _constraint_counts(pt: PenaltyPoint) -> tuple[int, int]:
    """``(m_e, m_i)``."""
    return (0 if pt.ce is None else int(pt.ce.shape[0]),
            0 if pt.ci is None else int(pt.ci.shape[0]))


def _qp_vectors(pt: PenaltyPoint, l: int):
    """``q``, bounds, equality row and ``mu`` of the stationarity QP with ``l`` samples (§10.3).

    Variables: all equality blocks, then the ``l`` objective weights, then all inequality
    blocks; ``c_E``, ``c_I``, ``f`` and ``mu`` are the current point's, repeated per sample.
    """
    m_e, m_i = _constraint_counts(pt)
    ce = to_host(pt.ce) if m_e else np.zeros(0)
    ci = to_host(pt.ci) if m_i else np.zeros(0)
    mu = pt.mu
    k, f_block = l * (1 + m_e + m_i), slice(l * m_e, l * (m_e + 1))
    q = -np.concatenate([ce] * l + [np.full(l, pt.f)] + [ci] * l)  # np.tile's values, faster
    lb = np.zeros(k)
    lb[:l * m_e] = -1.0
    ub = np.ones(k)
    ub[f_block] = mu
    eq = np.zeros(k)
    eq[f_block] = 1.0
    return q, lb, ub, eq, mu


#: from this many variables on (no reference case is that large), NumPy float64 gradient
#: matrices are built column-major: the columns are written contiguously (n = 1e5, 3 columns:
#: 0.13 ms against 1.1 ms for the row-major concatenation) and the products by ``H`` read them
#: contiguously; below, the reference cases keep their row-major arithmetic
COLUMN_MAJOR_MIN_N = 512


def _column_groups(samples: List[GradientSample]):
    """The column order of ``A`` (§10.3): ``(JE blocks, f-gradients, JI blocks)``, each in
    sample order."""
    return ([s.ce_grad for s in samples if s.ce_grad is not None],
            [s.f_grad for s in samples],
            [s.ci_grad for s in samples if s.ci_grad is not None])


def _gradient_matrix(samples: List[GradientSample], xp):
    """``A = [JE samples | f-grad samples | JI samples]`` (§10.3), on the device."""
    ce, f, ci = _column_groups(samples)
    if type(f[0]) is np.ndarray and f[0].dtype == np.float64 and f[0].shape[0] >= COLUMN_MAJOR_MIN_N:
        return _column_major(ce + f + ci)
    # one sample (the common case): a reshaped view, where ``stack`` costs ~3 µs on NumPy
    f_cols = xp.reshape(f[0], (-1, 1)) if len(f) == 1 else xp.stack(f, axis=1)
    cols = ce + [f_cols] + ci
    return cols[0] if len(cols) == 1 else xp.concat(cols, axis=1)


def _column_major(blocks: List[np.ndarray]) -> np.ndarray:
    """The blocks (vectors and ``n x m`` matrices) side by side in a column-major NumPy array:
    the values of their concatenation, each column written contiguously."""
    widths = [1 if b.ndim == 1 else int(b.shape[1]) for b in blocks]
    A = np.empty((int(blocks[0].shape[0]), sum(widths)), order="F")
    j = 0
    for b, w in zip(blocks, widths):
        if b.ndim == 1:
            A[:, j] = b
        else:
            A[:, j:j + w] = b
        j += w
    return A


class _GradientBlocks:
    """``A`` and ``H_QP A`` of the stationarity QP, whole or in chunks of samples (§10.3).

    ``chunks`` None: one matrix of the ``l`` samples (NumPy and other eager backends).  Else a
    list of equally long sample lists, the last padded with zero samples: each chunk is its own
    ``[JE | f-grads | JI]`` matrix of a fixed shape, and the host assembles ``Q`` from the
    chunk-by-chunk products, keeping the rows and columns of the samples present.  ``implicit``
    (compact L-BFGS, no chunks): ``H_QP A`` is held implicitly and neither matrix is formed.
    """

    def __init__(self, samples, chunks, apply_Hqp, m_e: int, m_i: int, backend: Backend,
                 apply_each=None, implicit=None):
        xp = backend.xp
        self.backend = backend
        self.k = len(samples) * (1 + m_e + m_i)
        self.implicit = None
        if chunks is None and implicit is not None:
            ce, f, ci = _column_groups(samples)
            self.implicit = implicit(ce + f + ci)  # H_QP A, never formed
            return
        if chunks is None:
            self.A = [_gradient_matrix(samples, xp)]
            self.where = None
        else:
            self.A = [_gradient_matrix(c, xp) for c in chunks]
            self.where = [_global_columns(b, len(chunks[0]), len(samples), m_e, m_i)
                          for b in range(len(chunks))]
        if chunks is None and apply_each is not None:
            self.HA = [_gradient_matrix(_multiplied(samples, apply_each), xp)]
        else:
            self.HA = [apply_Hqp(a) for a in self.A]

    def gram(self, metric: bool) -> np.ndarray:
        """``Aᵀ H_QP A`` (``metric``) or ``Aᵀ A`` on the host, ``k x k`` (not yet symmetrized)."""
        if self.implicit is not None:
            return self.implicit.gram() if metric else self.implicit.plain_gram()
        right = self.HA if metric else self.A
        if self.where is None:
            return to_host(self.A[0].T @ right[0])
        Q = np.empty((self.k, self.k))
        for i, (Ai, wi) in enumerate(zip(self.A, self.where)):
            keep_i = wi >= 0
            for j, (Rj, wj) in enumerate(zip(right, self.where)):
                keep_j = wj >= 0
                Q[np.ix_(wi[keep_i], wj[keep_j])] = to_host(Ai.T @ Rj)[np.ix_(keep_i, keep_j)]
        return Q

    def combine(self, y: np.ndarray):
        """``(H_QP A) y`` on the device, for the host QP answer ``y``."""
        if self.implicit is not None:
            return self.implicit.times(y)
        if self.where is None:
            return self.HA[0] @ self.backend.from_host(y)
        out = None
        for HAb, wb in zip(self.HA, self.where):
            yb = np.zeros(wb.shape[0])
            keep = wb >= 0
            yb[keep] = y[wb[keep]]
            part = HAb @ self.backend.from_host(yb)
            out = part if out is None else out + part
        return out


def _multiplied(samples: List[GradientSample], apply_each) -> List[GradientSample]:
    """The samples with every gradient array replaced by its product with ``H_QP`` (one
    ``apply_each`` call, so products known from earlier iterations are reused)."""
    arrays = []
    for s in samples:
        arrays += [a for a in (s.f_grad, s.ci_grad, s.ce_grad) if a is not None]
    products = iter(apply_each(arrays))
    return [GradientSample(s.x, next(products),
                           None if s.ci_grad is None else next(products),
                           None if s.ce_grad is None else next(products)) for s in samples]


def _global_columns(b: int, size: int, l: int, m_e: int, m_i: int) -> np.ndarray:
    """For chunk ``b`` of ``size`` samples: each column's index among the QP variables of the
    ``l`` samples present (``[JE of all | f of all | JI of all]``), or -1 for padding."""
    g = b * size + np.arange(size)  # the chunk's samples' global numbers
    ce = g[:, None] * m_e + np.arange(m_e)[None, :]
    f = l * m_e + g
    ci = l * (m_e + 1) + g[:, None] * m_i + np.arange(m_i)[None, :]
    cols = np.concatenate([ce.ravel(), f, ci.ravel()])
    present = np.concatenate([np.repeat(g < l, m_e), g < l, np.repeat(g < l, m_i)])
    return np.where(present, cols, -1)


def _psd_part(S):
    """``S`` with its negative eigenvalues set to 0 (attempt 4 of §10.3); None/scalars as they are."""
    if S is None or np.ndim(S) == 0:
        return S
    lam, V = np.linalg.eigh(S)
    return (V * np.maximum(lam, 0.0)) @ V.T


def _dense_attempts(qp_solver, Q, identity_Q, q, lb, ub, eq, mu, guess=None):
    """§10.3's attempts on a dense QP: ``Q``, then ``identity_Q()``, then ``Q``'s PSD part.

    ``guess`` (the warm start, :mod:`ncvx_ref.warm_start`) goes with the first attempt only.
    Returns ``(y, n_qp)``, or ``(None, 4)`` when every attempt failed.
    """
    for n_qp, make_Q in ((1, lambda: Q), (2, identity_Q), (4, lambda: _psd_part(Q))):
        try:
            return qp_solver.solve(BoxQP(make_Q(), q, lb, ub, eq_coeffs=eq, eq_rhs=mu,
                                         kind="stationarity",
                                         guess=guess if n_qp == 1 else None)), n_qp
        except (QPSolverError, np.linalg.LinAlgError):
            continue
    return None, 4


def _structured_attempts(qp_solver, A, M, q, lb, ub, eq, mu):
    """§10.3's attempts on a structured QP ``Q = Aᵀ M A``: ``M = H_QP``, then ``M = I``
    (None), then ``M``'s PSD part (``n x n``, so ``Q`` is PSD).  ``(y, n_qp)`` or ``(None, 4)``."""
    for n_qp, make_M in ((1, lambda: M), (2, lambda: None), (4, lambda: _psd_part(M))):
        try:
            return qp_solver.solve(BoxQP(None, q, lb, ub, eq_coeffs=eq, eq_rhs=mu,
                                         kind="stationarity", A=A, M=make_M())), n_qp
        except (QPSolverError, np.linalg.LinAlgError):
            continue
    return None, 4


@dataclass(frozen=True)
class MergedColumns:
    """The stationarity QP with repeated gradient columns merged (``docs/deviations.md``).

    A constraint whose gradient at a cached sample is bit-for-bit the current point's (every
    sample of a linear constraint; an objective gradient likewise) contributes the same column
    ``a`` and the same linear term ``-c_j`` (or ``-f``) once per sample, each weight in
    ``[0, 1]`` (``[-1, 1]``; ``[0, mu]``).  Only their sum enters the objective, so those ``r``
    weights are replaced by one in ``[0, r]`` (``[-r, r]``; ``[0, r mu]``, still in the equality
    row): the same QP in fewer variables, hence the same minimizing ``A y`` and the same
    ``d = -H_QP A y`` up to rounding.  Linear constraints make the full QP ``l`` times larger
    than this one (an SVM with 2,000 margin constraints: ~200,000 variables instead of ~2,100).

    ``blocks``: device column blocks in QP-variable order (``[E ... | F | I ...]``).
    ``current``: the current sample's position among the samples; ``f_same``, ``ce_same``,
    ``ci_same``: for each other sample in order, which of its columns repeat the current's
    (what the merge was decided from; :attr:`groups` is derived from them).
    """

    blocks: List[Array]
    q: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    eq: np.ndarray
    mu: float
    current: int
    f_same: List[bool]
    ce_same: Optional[List[np.ndarray]]
    ci_same: Optional[List[np.ndarray]]

    @functools.cached_property
    def groups(self) -> np.ndarray:
        """For each variable of the full QP (§10.3's order), the merged variable it went into.

        Derived on first use (only warm starts need it): the merged variables are numbered in
        the order :func:`merge_repeated_columns` lays out their columns.
        """
        l = len(self.f_same) + 1
        others = [j for j in range(l) if j != self.current]
        m_e = 0 if self.ce_same is None else int(self.ce_same[0].shape[0])
        m_i = 0 if self.ci_same is None else int(self.ci_same[0].shape[0])
        groups = np.empty(l * (1 + m_e + m_i), dtype=np.intp)
        position = 0  # the next merged variable

        def constraint_part(same, m, offset):
            nonlocal position
            same_of = dict(zip(others, same))
            repeated = []  # (a sample's first full index, its columns equal to the current's)
            for j in range(l):
                base = offset + j * m
                if j == self.current:
                    current_pos = np.arange(position, position + m)
                    groups[base:base + m] = current_pos
                    position += m
                    continue
                keep = np.flatnonzero(~same_of[j])
                groups[base + keep] = np.arange(position, position + keep.size)
                position += keep.size
                repeated.append((base, np.flatnonzero(same_of[j])))
            for base, cols in repeated:
                groups[base + cols] = current_pos[cols]

        if self.ce_same is not None:
            constraint_part(self.ce_same, m_e, 0)
        f_group = position  # the current point's objective weight and its repeats
        position += 1
        for j, same in zip(others, self.f_same):
            if same:
                groups[l * m_e + j] = f_group
            else:
                groups[l * m_e + j] = position
                position += 1
        groups[l * m_e + self.current] = f_group
        if self.ci_same is not None:
            constraint_part(self.ci_same, m_i, l * (m_e + 1))
        return groups

    def merge(self, y_full: np.ndarray) -> np.ndarray:
        """A full-QP answer as a merged one (a merged weight is the sum of its members')."""
        return np.bincount(self.groups, weights=y_full, minlength=self.q.shape[0])

    def expand(self, y: np.ndarray) -> np.ndarray:
        """A merged answer as a full-QP one, each merged weight shared equally by its members
        (each inside its own bounds, since the merged bounds are the sums of theirs)."""
        counts = np.bincount(self.groups, minlength=self.q.shape[0])
        return y[self.groups] / counts[self.groups]


def _same_columns(a: Array, ref: Array, backend: Backend):
    """Whether ``a`` equals ``ref`` exactly: one bool for vectors, one per column (a host bool
    array) for matrices.  On NumPy a first row that differs everywhere answers without the
    full comparison (gradients of a nonlinear function at two points almost always differ
    in their first entry)."""
    xp = backend.xp
    if backend.host_f64 and type(a) is np.ndarray and type(ref) is np.ndarray:
        if a.ndim == 1:
            return bool(a[0] == ref[0]) and bool(np.logical_and.reduce(a == ref))
        if not backend.any(a[0] == ref[0]):
            return np.zeros(a.shape[1], dtype=bool)
        return np.logical_and.reduce(a == ref, axis=0)
    if len(a.shape) == 1:
        return bool(to_host(xp.all(a == ref)))
    return np.asarray(to_host(xp.all(a == ref, axis=0))) != 0


def merge_repeated_columns(pt: PenaltyPoint, samples: List[GradientSample],
                           current: GradientSample, backend: Backend) -> Optional[MergedColumns]:
    """The merged stationarity QP, or None when no cached column repeats the current point's
    (or the full QP has fewer than :data:`MERGE_MIN_K` variables).

    Columns are compared with the current point's column of the same function (the only
    repeats that share their linear term), by exact equality on the device; one small boolean
    vector per sample and block comes back to the host.
    """
    m_e, m_i = _constraint_counts(pt)
    l = len(samples)
    if l < 2 or l * (1 + m_e + m_i) < MERGE_MIN_K:
        return None
    xp = backend.xp
    others = [s for s in samples if s is not current]
    if len(others) != l - 1:
        return None
    f_same = [_same_columns(s.f_grad, current.f_grad, backend) for s in others]

    def repeats(get):
        ref = get(current)
        if ref is None:
            return None
        return [_same_columns(get(s), ref, backend) for s in others]

    ce_same = repeats(lambda s: s.ce_grad)
    ci_same = repeats(lambda s: s.ci_grad)
    # the masks are host NumPy arrays (whatever the run's namespace): NumPy's reduction, without
    # np.any's wrapper
    found = any(f_same) or any(bool(np.logical_or.reduce(r)) for grp in (ce_same, ci_same)
                               if grp for r in grp)
    if not found:
        return None

    mu = pt.mu
    f_val = pt.f
    ce = to_host(pt.ce) if ce_same is not None else None
    ci = to_host(pt.ci) if ci_same is not None else None
    blocks: List[Array] = []
    q, lb, ub, eq = [], [], [], []

    def constraint_blocks(vals, same, get, lo_sign):
        count = 1.0 + np.sum(np.stack(same), axis=0)  # multiplicity of the current point's columns
        same_of = {id(s): r for s, r in zip(others, same)}
        for s in samples:
            if s is current:
                blocks.append(get(s))
                q.append(-vals); lb.append(lo_sign * count); ub.append(count)
                eq.append(np.zeros(vals.shape[0]))
                continue
            keep = np.flatnonzero(~same_of[id(s)])
            if keep.size == 0:
                continue
            cols = get(s)
            blocks.append(cols if keep.size == vals.shape[0]
                          else xp.take(cols, xp.asarray(keep, device=backend.device), axis=1))
            q.append(-vals[keep]); lb.append(lo_sign * np.ones(keep.size)); ub.append(np.ones(keep.size))
            eq.append(np.zeros(keep.size))

    if ce is not None:
        constraint_blocks(ce, ce_same, lambda s: s.ce_grad, -1.0)
    f_cols = [current.f_grad] + [s.f_grad for s, same in zip(others, f_same) if not same]
    blocks.append(xp.stack(f_cols, axis=1))
    nf = len(f_cols)
    q.append(np.full(nf, -f_val)); lb.append(np.zeros(nf))
    ub.append(np.concatenate([[mu * (1 + sum(f_same))], np.full(nf - 1, mu)]))
    eq.append(np.ones(nf))
    if ci is not None:
        constraint_blocks(ci, ci_same, lambda s: s.ci_grad, 0.0)
    current_index = next(j for j, s in enumerate(samples) if s is current)
    return MergedColumns(blocks, np.concatenate(q), np.concatenate(lb), np.concatenate(ub),
                         np.concatenate(eq), mu, current_index, f_same, ce_same, ci_same)


def _termination_qp_merged(pt: PenaltyPoint, merged: MergedColumns, apply_Hqp, qp_solver,
                           backend: Backend, warm: Optional[_Warm] = None):
    """§10.3 on the merged QP: the same attempts (H_QP, identity, clipped) and ``d = −H_QP A y``.

    ``warm``: the run's warm start and this QP's samples (answers are kept in the full QP's
    layout, so the merged guess is the merged previous answer).
    """
    xp = backend.xp
    n = int(pt.x.shape[0])
    k = int(merged.q.shape[0])
    qp_data = (merged.q, merged.lb, merged.ub, merged.eq, merged.mu)
    offsets = np.cumsum([0] + [int(b.shape[1]) for b in merged.blocks])

    def Ay(y):
        out = None
        for b, lo, hi in zip(merged.blocks, offsets[:-1], offsets[1:]):
            part = b @ backend.from_host(y[lo:hi])
            out = part if out is None else out + part
        return out

    if wants_structure(qp_solver, n, k):
        available, M = host_metric(apply_Hqp, n, backend)
        if available:
            A = host_gradients([to_host(b) for b in merged.blocks])
            y, n_qp = _structured_attempts(qp_solver, A, M, *qp_data)
            if warm is not None:
                warm.remember(pt, None if y is None else merged.expand(y))
            return (backend.full((n,), math.inf) if y is None else -apply_Hqp(Ay(y))), n_qp

    A = merged.blocks[0] if len(merged.blocks) == 1 else xp.concat(merged.blocks, axis=1)
    HA = apply_Hqp(A)
    Q = to_host(A.T @ HA)
    Q = (Q + Q.T) / 2

    def identity_Q():
        Qi = to_host(A.T @ A)
        return (Qi + Qi.T) / 2

    guess = None if warm is None else warm.guess(pt)
    y, n_qp = _dense_attempts(qp_solver, Q, identity_Q, *qp_data,
                              guess=None if guess is None else merged.merge(guess))
    if warm is not None:
        warm.remember(pt, None if y is None else merged.expand(y))
    return (backend.full((n,), math.inf) if y is None else -(HA @ backend.from_host(y))), n_qp


def _termination_qp(pt: PenaltyPoint, samples: List[GradientSample], apply_Hqp, qp_solver,
                    backend: Backend, chunks: Optional[List[List[GradientSample]]] = None,
                    apply_each=None, implicit=None, warm: Optional[_Warm] = None):
    """§10.3: build A, Q, q and the bounds; solve with fallbacks; ``d = −(H_QP A) y``.

    ``chunks``: the samples in fixed-size chunks (fixed-shape backends, see :class:`_GradientBlocks`).
    ``apply_each``, ``implicit``: see :func:`stationarity`.  ``warm``: the run's warm start
    bound to ``samples`` (the dense QP gets its guess; every answer is remembered).
    """
    l = len(samples)
    n = int(pt.x.shape[0])
    m_e, m_i = _constraint_counts(pt)
    if wants_structure(qp_solver, n, l * (1 + m_e + m_i)):
        available, M = host_metric(apply_Hqp, n, backend)
        if available:
            return _termination_qp_structured(pt, samples, apply_Hqp, M, qp_solver, backend, warm)
    blocks = _GradientBlocks(samples, chunks, apply_Hqp, m_e, m_i, backend, apply_each, implicit)
    Q = blocks.gram(metric=True)
    Q = (Q + Q.T) / 2

    def identity_Q():
        Qi = blocks.gram(metric=False)
        return (Qi + Qi.T) / 2

    y, n_qp = _dense_attempts(qp_solver, Q, identity_Q, *_qp_vectors(pt, l),
                              guess=None if warm is None else warm.guess(pt))
    if warm is not None:
        warm.remember(pt, y)
    return (backend.full((n,), math.inf) if y is None else -blocks.combine(y)), n_qp


def _termination_qp_structured(pt: PenaltyPoint, samples: List[GradientSample], apply_Hqp, M,
                               qp_solver, backend: Backend, warm: Optional[_Warm] = None):
    """§10.3 for large QPs (``docs/large_qps.md``): the same QP and attempts in structured form.

    ``Q = Aᵀ H_QP A`` is passed as host ``A`` (sparse when it is) and ``M = H_QP``; attempt 2
    uses ``M = I``; attempt 4 clips the negative eigenvalues of ``M`` (``n x n``) instead of those
    of ``Q`` (so ``Q`` is PSD).  ``d = −H_QP (A y)``, the same vector as ``−(H_QP A) y``.
    """
    l = len(samples)
    ce, f, ci = _column_groups(samples)
    A = host_gradients([to_host(b) for b in ce] + [np.stack([to_host(g) for g in f], axis=1)]
                       + [to_host(b) for b in ci])
    y, n_qp = _structured_attempts(qp_solver, A, M, *_qp_vectors(pt, l))
    if warm is not None:
        warm.remember(pt, y)  # the lifted path takes no guess; the next dense QP may
    if y is None:
        return backend.full((int(pt.x.shape[0]),), math.inf), 4
    m_e, m_i = _constraint_counts(pt)
    return -apply_Hqp(_combine(samples, y, m_e, m_i, backend)), n_qp


def _combine(samples: List[GradientSample], y: np.ndarray, m_e: int, m_i: int, backend: Backend):
    """``A y`` for ``A = [JE samples | f-grad samples | JI samples]``, block by block on the device.

    ``y`` (the host QP answer) is cut into blocks on the host, so the device sees the same
    shapes at every call.
    """
    l = len(samples)
    out = backend.zeros((int(samples[0].x.shape[0]),))
    pos = 0
    for s in samples:
        if s.ce_grad is not None:
            out = out + s.ce_grad @ backend.from_host(y[pos:pos + m_e])
            pos += m_e
    for s in samples:
        out = out + float(y[pos]) * s.f_grad
        pos += 1
    for s in samples:
        if s.ci_grad is not None:
            out = out + s.ci_grad @ backend.from_host(y[pos:pos + m_i])
            pos += m_i
    assert pos == l * (1 + m_e + m_i)
    return out
