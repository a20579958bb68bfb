"""The benchmark problems, each defined once and evaluated in any Array-API namespace.

A problem is a :class:`BenchProblem`: ``make(params, rng)`` draws its data (NumPy arrays,
``x0`` included) once, in the driver, so every solver sees the same bytes; ``prepare(data,
xp)`` moves the data into the namespace a solver works in (NumPy for ncvx_ref and SciPy,
torch for PyGRANSO) and derives constants; ``evaluate(prep, x)`` returns GRANSO's six-tuple
``(f, f_grad, ci, ci_grad, ce, ce_grad)`` with analytic (sub)gradients, Jacobians ``n x m``
with columns = constraint gradients, ``None`` for an absent group.  The same code thus
feeds ncvx_ref (NumPy), PyGRANSO (torch, ``globalAD=False``) and SciPy (NumPy): the
comparison is solver against solver, not autodiff against hand-written gradients.

This module needs only NumPy and array-api-compat, so the PyGRANSO virtual environment
(NumPy 1.x) imports it too.  ``reference_f`` (driver only) may use SciPy or Clarabel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import array_api_compat as aac

Array = Any
Data = Dict[str, np.ndarray]
SixTuple = Tuple[Any, Array, Optional[Array], Optional[Array], Optional[Array], Optional[Array]]


@dataclass(frozen=True)
class BenchProblem:
    """One benchmark family: data maker, namespace preparation, evaluation, reference value."""

    name: str
    title: str
    smooth: bool
    make: Callable[[dict, np.random.Generator], Data]
    prepare: Callable[[Data, Any], dict]
    evaluate: Callable[[dict, Array], SixTuple]
    reference_f: Optional[Callable[[Data], Optional[float]]] = None


def _to(xp, a: np.ndarray, like_device=None):
    """NumPy data as a float64 array of namespace ``xp`` (zero-copy where the namespace can)."""
    if aac.is_torch_namespace(xp):
        import torch
        return torch.from_numpy(np.ascontiguousarray(a))
    return xp.asarray(np.ascontiguousarray(a))


def _plain(data: Data, xp, keys) -> dict:
    prep = {k: _to(xp, data[k]) for k in keys}
    prep["xp"] = xp
    return prep


# --------------------------------------------------------------------------- 1. nonsmooth Rosenbrock
def _nsrosen_make(params: dict, rng) -> Data:
    # GRANSO's example 2 as in the reference case nsrosen_split_ex2 (x0 = (5.5, 5.5)).
    return {"x0": np.asarray(params.get("x0", [5.5, 5.5]), dtype=np.float64)}


def _nsrosen_eval(prep: dict, x: Array) -> SixTuple:
    xp = prep["xp"]
    x1, x2 = x[0], x[1]
    r = x1 * x1 - x2
    s = 1.0 if float(r) >= 0 else -1.0
    f = 8.0 * xp.abs(r) + (1.0 - x1) ** 2
    g = xp.stack([16.0 * s * x1 - 2.0 * (1.0 - x1), -8.0 * s + 0.0 * x2])
    ci = xp.stack([math.sqrt(2.0) * x1 - 1.0, 2.0 * x2 - 1.0])
    return f, g, ci, prep["J"], None, None


def _nsrosen_prepare(data: Data, xp) -> dict:
    return {"xp": xp, "J": _to(xp, np.array([[math.sqrt(2.0), 0.0], [0.0, 2.0]]))}


NSROSEN = BenchProblem(
    "nsrosen", "nonsmooth Rosenbrock (GRANSO ex. 2), n=2, 2 ineq", False,
    _nsrosen_make, _nsrosen_prepare, _nsrosen_eval,
    reference_f=lambda data: (1.0 - 1.0 / math.sqrt(2.0)) ** 2)


# --------------------------------------------------------------------------- 2. smallest eigenvalue
def _eig_make(params: dict, rng) -> Data:
    n = int(params["n"])
    G = rng.standard_normal((n, n))
    A = (G + G.T) / (2.0 * math.sqrt(n))
    x0 = rng.standard_normal(n)
    return {"A": A, "x0": x0 / np.linalg.norm(x0)}


def _eig_eval(prep: dict, x: Array) -> SixTuple:
    xp = prep["xp"]
    Ax = prep["A"] @ x
    ce = xp.reshape(xp.vecdot(x, x) - 1.0, (1,))
    return xp.vecdot(x, Ax), 2.0 * Ax, None, None, ce, xp.reshape(2.0 * x, (-1, 1))


EIGEN = BenchProblem(
    "eigen", "smallest eigenvalue: min x'Ax s.t. ||x||^2 = 1", True,
    _eig_make, lambda d, xp: _plain(d, xp, ["A"]), _eig_eval,
    reference_f=lambda data: float(np.linalg.eigvalsh(data["A"])[0]))


# --------------------------------------------------------------------------- 3./4. l1 + two constraints
def _l1_make(params: dict, rng) -> Data:
    n = int(params["n"])
    a = rng.standard_normal(n)
    return {"a": a, "x0": a.copy()}


def _l1_eval(prep: dict, x: Array) -> SixTuple:
    """f = 0.5||x-a||^2 + ||x||_1; ci = (sum(x) - 1, mean(x^2) - 0.05); sign(0) = 0."""
    xp = prep["xp"]
    n = x.shape[0]
    r = x - prep["a"]
    f = 0.5 * xp.vecdot(r, r) + xp.sum(xp.abs(x))
    g = r + xp.sign(x)
    ci = xp.stack([xp.sum(x) - 1.0, xp.vecdot(x, x) / n - 0.05])
    J = xp.stack([prep["ones"], (2.0 / n) * x], axis=1)
    return f, g, ci, J, None, None


def _l1_prepare(data: Data, xp) -> dict:
    prep = _plain(data, xp, ["a"])
    prep["ones"] = _to(xp, np.ones(data["a"].shape[0]))
    return prep


L1 = BenchProblem(
    "l1_two_ineq", "0.5||x-a||^2 + ||x||_1 s.t. sum(x) <= 1, mean(x^2) <= 0.05", False,
    _l1_make, _l1_prepare, _l1_eval)


# --------------------------------------------------------------------------- 5. soft-margin SVM
def _svm_make(params: dict, rng) -> Data:
    """FAMILIES.md's svm_soft_margin: labels alternate, samples N(0, I) + y_i u (u unit)."""
    N, d = int(params["N"]), int(params["d"])
    y = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    X = rng.standard_normal((N, d)) + y[:, None] * u[None, :]
    return {"X": X, "y": y, "C": np.asarray(float(params.get("C", 1.0))),
            "x0": np.zeros(d + 1 + N)}


def _svm_prepare(data: Data, xp) -> dict:
    X, y = data["X"], data["y"]
    N, d = X.shape
    J = np.zeros((d + 1 + N, 2 * N))
    J[:d, :N] = -(y[:, None] * X).T
    J[d, :N] = -y
    J[d + 1:, :N] = -np.eye(N)
    J[d + 1:, N:] = -np.eye(N)
    g_tail = np.concatenate([[0.0], np.full(N, float(data["C"]))])
    prep = _plain({"yX": y[:, None] * X, "J": J, "g_tail": g_tail}, xp, ["yX", "J", "g_tail"])
    prep.update(d=d, C=float(data["C"]), y=_to(xp, y))
    return prep


def _svm_eval(prep: dict, x: Array) -> SixTuple:
    xp, d = prep["xp"], prep["d"]
    w, b, zeta = x[:d], x[d], x[d + 1:]
    f = 0.5 * xp.vecdot(w, w) + prep["C"] * xp.sum(zeta)
    g = xp.concat([w, prep["g_tail"]])
    margin = prep["yX"] @ w + prep["y"] * b
    ci = xp.concat([1.0 - zeta - margin, -zeta])
    return f, g, ci, prep["J"], None, None


def _svm_reference(data: Data) -> Optional[float]:
    """The optimum of the primal QP, by Clarabel to ~1e-11 (None when Clarabel is missing)."""
    try:
        import clarabel
        import scipy.sparse as sp
    except ImportError:
        return None
    X, y, C = data["X"], data["y"], float(data["C"])
    N, d = X.shape
    n = d + 1 + N
    P = sp.diags(np.r_[np.ones(d), np.zeros(1 + N)]).tocsc()
    q = np.r_[np.zeros(d + 1), np.full(N, C)]
    yX = y[:, None] * X
    A1 = sp.hstack([sp.csr_matrix(-yX), sp.csr_matrix(-y[:, None]), -sp.identity(N)])
    A2 = sp.hstack([sp.csr_matrix((N, d + 1)), -sp.identity(N)])
    A = sp.vstack([A1, A2]).tocsc()
    b = np.r_[-np.ones(N), np.zeros(N)]
    s = clarabel.DefaultSettings()
    s.verbose = False
    s.tol_gap_abs = s.tol_gap_rel = s.tol_feas = 1e-12
    sol = clarabel.DefaultSolver(P, q, A, b, [clarabel.NonnegativeConeT(2 * N)], s).solve()
    x = np.asarray(sol.x)
    assert x.shape == (n,)
    return float(0.5 * x[:d] @ x[:d] + C * x[d + 1:].sum())


SVM = BenchProblem(
    "svm", "soft-margin linear SVM (primal), 2N linear inequalities", True,
    _svm_make, _svm_prepare, _svm_eval, reference_f=_svm_reference)


# --------------------------------------------------------------------------- 6. adversarial attack
def _attack_make(params: dict, rng) -> Data:
    """A 784-100-10 ReLU MLP with He-scaled random weights and one random image in [0, 1]."""
    d_in, h, k = int(params.get("d_in", 784)), int(params.get("hidden", 100)), 10
    W1 = rng.standard_normal((h, d_in)) * math.sqrt(2.0 / d_in)
    b1 = 0.1 * rng.standard_normal(h)
    W2 = rng.standard_normal((k, h)) * math.sqrt(2.0 / h)
    b2 = 0.1 * rng.standard_normal(k)
    img = rng.uniform(0.0, 1.0, d_in)
    label = int(np.argmax(W2 @ np.maximum(W1 @ img + b1, 0.0) + b2))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "img": img,
            "label": np.asarray(label), "split_box": np.asarray(bool(params["split_box"])),
            "x0": np.zeros(d_in)}


def _attack_prepare(data: Data, xp) -> dict:
    prep = _plain(data, xp, ["W1", "b1", "W2", "b2", "img"])
    label, k = int(data["label"]), data["W2"].shape[0]
    prep["label"] = label
    prep["others"] = _to(xp, np.where(np.arange(k) == label, -np.inf, 0.0))
    prep["split"] = bool(data["split_box"])
    if prep["split"]:
        n = data["img"].shape[0]
        prep["J_box"] = _to(xp, np.concatenate([np.eye(n), -np.eye(n)], axis=1))
    return prep


def _attack_eval(prep: dict, x: Array) -> SixTuple:
    """min ||delta||_2 s.t. logit_label - max_{j != label} logit_j <= 0 and img + delta in [0, 1].

    Subgradients: delta/||delta|| (0 at delta = 0); ReLU'(0) = 0; the max picks the first
    index.  The box is one constraint sum(max(z-1, 0) + max(-z, 0)) <= 0 (folded) or the 2n
    constraints (z - 1, -z) <= 0 (split), z = img + delta.
    """
    xp = prep["xp"]
    nrm = xp.sqrt(xp.vecdot(x, x))
    f = nrm
    g = x / nrm if float(nrm) > 0 else x * 0.0
    z = prep["img"] + x
    pre = prep["W1"] @ z + prep["b1"]
    act = xp.where(pre > 0, pre, 0.0 * pre)
    logits = prep["W2"] @ act + prep["b2"]
    j = int(xp.argmax(logits + prep["others"]))
    lab = prep["label"]
    margin = logits[lab] - logits[j]
    w_diff = prep["W2"][lab, :] - prep["W2"][j, :]
    mask = xp.astype(pre > 0, x.dtype)
    g_margin = (mask * w_diff) @ prep["W1"]
    if prep["split"]:
        ci = xp.concat([xp.reshape(margin, (1,)), z - 1.0, -z])
        J = xp.concat([xp.reshape(g_margin, (-1, 1)), prep["J_box"]], axis=1)
    else:
        over, under = z - 1.0, -z
        box = xp.sum(xp.where(over > 0, over, 0.0 * over) + xp.where(under > 0, under, 0.0 * under))
        g_box = xp.astype(over > 0, x.dtype) - xp.astype(under > 0, x.dtype)
        ci = xp.stack([margin, box])
        J = xp.stack([g_margin, g_box], axis=1)
    return f, g, ci, J, None, None


ATTACK = BenchProblem(
    "attack", "min-radius adversarial attack on a 784-100-10 ReLU MLP", False,
    _attack_make, _attack_prepare, _attack_eval)


PROBLEMS: Dict[str, BenchProblem] = {p.name: p for p in (NSROSEN, EIGEN, L1, SVM, ATTACK)}


# --------------------------------------------------------------------------- instances
#: conformance-case families whose functions are smooth (SciPy's methods apply to them)
SMOOTH_FAMILIES = frozenset({"rosenbrock", "qp_ineq", "sphere_eig", "hock_schittkowski",
                             "infeasible", "svm_soft_margin"})


@dataclass(frozen=True)
class Instance:
    """A problem ready to run in one namespace: ``evaluate(x) -> SixTuple`` and its sizes."""

    label: str
    n: int
    n_ineq: int
    n_eq: int
    x0: np.ndarray
    smooth: bool
    evaluate: Callable[[Array], SixTuple]


def case_file(case_id: str, cases_dir: str) -> str:
    import os
    path = os.path.join(cases_dir, f"{case_id}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"reference case {case_id!r} not found at {path}; pass "
                                f"--cases-dir pointing at shared/granso_reference/cases.")
    return path


def load_instance(spec: dict, xp) -> Instance:
    """The instance a job spec names, evaluated in namespace ``xp`` (numpy or torch).

    ``spec["kind"]`` is ``"bench"`` (``problem``, ``data`` = path of the .npz the driver
    wrote) or ``"case"`` (``case`` id and ``cases_dir``; rebuilt by ``ncvx_ref.problems``).
    """
    if spec["kind"] == "bench":
        with np.load(spec["data"]) as z:
            data = {k: z[k] for k in z.files}
        prob = PROBLEMS[spec["problem"]]
        prep = prob.prepare(data, xp)
        ev = prob.evaluate
        evaluate = lambda x: ev(prep, x)  # noqa: E731
        _, _, ci, _, ce, _ = evaluate(_to(xp, data["x0"]))
        return Instance(spec["label"], int(data["x0"].shape[0]),
                        0 if ci is None else int(ci.shape[0]), 0 if ce is None else int(ce.shape[0]),
                        data["x0"], prob.smooth, evaluate)
    if spec["kind"] == "case":
        import json
        from ncvx_ref import problems as ref_problems
        with open(case_file(spec["case"], spec["cases_dir"])) as fh:
            case = json.load(fh)
        tp = ref_problems.from_case(case)

        def evaluate(x):
            e = tp.evaluate(x)
            return e.f, e.f_grad, e.ci, e.ci_grad, e.ce, e.ce_grad

        return Instance(spec["label"], tp.n, tp.n_ineq, tp.n_eq, np.asarray(tp.x0, dtype=np.float64),
                        case["family"] in SMOOTH_FAMILIES, evaluate)
    raise ValueError(f"unknown job kind {spec['kind']!r}; expected 'bench' or 'case'.")


def diagonal_from_blocks(blocks) -> np.ndarray:
    """The suite option ``H0_diagonal`` (``[[count, value], ...]``, kept short in the job's
    JSON) as the diagonal vector it describes; runners pass ``diag`` of it as GRANSO's ``H0``."""
    return np.concatenate([np.full(int(count), float(value)) for count, value in blocks])


def violation(ci, ce) -> float:
    """GRANSO's total violation: the infinity norm of (max(ci, 0), |ce|) (NumPy inputs)."""
    v = 0.0
    if ci is not None and np.size(ci):
        v = max(v, float(np.max(np.maximum(np.asarray(ci), 0.0))))
    if ce is not None and np.size(ce):
        v = max(v, float(np.max(np.abs(np.asarray(ce)))))
    return v
