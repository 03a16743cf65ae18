"""Operator overloads of Tensor (filled in by its owner)."""
