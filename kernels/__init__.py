"""Numba kernels: small, pure, array-in array-out hot loops, compiled on purpose by
`prepare()` rather than on first use."""
