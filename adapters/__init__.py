"""Differentiation adapters: user functions in torch, JAX, autograd or analytic form -> Evaluation records."""
