"""Triton kernels, one op per file. Importing this package requires triton."""
