"""Ed25519 keys: made, stored (file mode 0600), loaded, and used to sign/verify.

Public keys travel as 64 lower-case hex characters (the raw 32 bytes), so they
fit in JSON, a QR code and a log line alike; private keys never leave their
file.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PRIVATE_FILE_MODE = 0o600


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the key as PKCS#8 PEM, created with mode 0600 from the first byte on.

    The file is created through os.open with the mode so that it is never,
    even for a moment, readable by others; an existing key is never overwritten.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())


def load_private(path: Path) -> Ed25519PrivateKey:
    """Load a private key, refusing a file that others can read."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} has mode {mode:o}; a private key must be 0600")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 key")
    return key


def load_or_create_private(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private(path)
    key = generate()
    save_private(key, path)
    return key


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_from_hex(text: str) -> Ed25519PublicKey:
    """Parse 64 hex characters; raise ValueError on anything else."""
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public`'s signature over `message`."""
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True
