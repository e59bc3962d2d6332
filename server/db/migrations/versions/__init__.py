"""Versioned schema migrations; never edit one that has shipped, add a new one."""
