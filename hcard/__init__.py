"""Hattingen Card: the shared core that terminal and server both import.

Everything here is pure (no I/O but key files) so that the two sides can never
disagree about bytes: money, card numbers, the canonical record encoding, keys,
the hash chain, request signing and the error codes.
"""
