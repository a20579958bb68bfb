"""Differentiation adapters: user functions in torch, JAX, autograd or analytic form -> Evaluation records.

Import the adapter of your framework; each imports its framework only when it is imported::

    from ncvx_ref.adapters import analytic   # values and gradients by hand (NumPy, CuPy, ...)
    from ncvx_ref.adapters import autograd   # HIPS autograd on NumPy
    from ncvx_ref.adapters import torch      # PyTorch (CPU or CUDA), nn.Module parameters
    from ncvx_ref.adapters import jax        # JAX, jit-compiled evaluation, pytrees

Each offers a ``Problem`` (the core's ``x -> Evaluation``) and a ``solve`` that returns the
variables by name.  The flattening of named variables and constraint groups is documented in
:mod:`ncvx_ref.adapters.variables`; ``docs/adapters.md`` is the user guide.
"""
from ._solve import Solution
from .variables import AdapterError, Variables

__all__ = ["AdapterError", "Solution", "Variables"]
