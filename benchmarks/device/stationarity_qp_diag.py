"""Device diagnostic: the fixed-shape stationarity test problem (tests/test_fixed_shapes.py,
chunk 2, ngrad 5) run plain and chunked with every QP recorded; prints the QP pairs whose
objective values differ by more than 1e-9 relative, with their certification, and saves them
(``$OUT/stationarity_qps.npz``) to be re-solved elsewhere."""
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(os.path.join(REPO, "tests"))

import ncvx_ref  # noqa: E402
from ncvx_ref import stationarity as st  # noqa: E402
from ncvx_ref.qp.default import get_qp_solver  # noqa: E402
from ncvx_ref.qp.polish import kkt_residual  # noqa: E402
import test_fixed_shapes as T  # noqa: E402


class Recorder:
    def __init__(self):
        self.inner = get_qp_solver(None)
        self.name = "diag"
        self.rows = []

    def wants_structure(self, n, k):
        from ncvx_ref.qp.lifted import wants_structure
        return wants_structure(self.inner, n, k)

    def solve(self, qp):
        y = self.inner.solve(qp)
        self.rows.append((qp, np.array(y, copy=True)))
        return y


def run(fixed):
    st.FIXED_SHAPE_CHUNK = 2
    st.compiles_per_shape = lambda xp: fixed
    fn, x0 = T.tanh_problem()
    rec = Recorder()
    res = ncvx_ref.solve(fn, x0, print_level=0, record_history=True, qp_solver=rec, ngrad=5, maxit=40, opt_tol=0.0)
    return res, rec.rows


def main():
    plain, pq = run(False)
    fixed, fq = run(True)
    print("iterations", len(plain.history), len(fixed.history), "QPs", len(pq), len(fq))
    for a, b in zip(fixed.history, plain.history):
        if abs(a.stat_val - b.stat_val) > 1e-6 * max(b.stat_val, 1e-300):
            print(f"iter {a.iteration}: stat fixed {a.stat_val:.6e} plain {b.stat_val:.6e}")
    save = {}
    for i, ((qa, ya), (qb, yb)) in enumerate(zip(pq, fq)):
        if qa.Q is None or qb.Q is None or qa.Q.shape != qb.Q.shape:
            continue
        va = 0.5 * ya @ qa.Q @ ya + qa.q @ ya
        vb = 0.5 * yb @ qb.Q @ yb + qb.q @ yb
        if abs(va - vb) > 1e-9 * max(1.0, abs(va)):
            ra, rb = kkt_residual(qa, ya).total, kkt_residual(qb, yb).total
            print(f"QP {i} kind {qa.kind} k {qa.size}: plain {va:.10e} (kkt {ra:.1e}) fixed {vb:.10e} "
                  f"(kkt {rb:.1e}); |dQ| {np.max(np.abs(qa.Q - qb.Q)):.1e}, cond {np.linalg.cond(qa.Q):.1e}")
            for tag, qp, y in (("plain", qa, ya), ("fixed", qb, yb)):
                save[f"{i}_{tag}_Q"], save[f"{i}_{tag}_q"], save[f"{i}_{tag}_y"] = qp.Q, qp.q, y
                save[f"{i}_{tag}_lb"], save[f"{i}_{tag}_ub"] = qp.lb, qp.ub
                if qp.eq_coeffs is not None:
                    save[f"{i}_{tag}_a"], save[f"{i}_{tag}_b"] = qp.eq_coeffs, np.array([qp.eq_rhs])
    if save:
        np.savez(os.path.join(os.environ.get("OUT", "/tmp"), "stationarity_qps.npz"), **save)


if __name__ == "__main__":
    main()
