"""The certificate and key an institution issued for the hub (hub.https: certificate), checked
before anything is sent: PEM, the key belongs to the certificate, the certificate names the hub
and is valid now. Reads only the two files; runs nothing.

`cryptography` parses them: paramiko, which fabric needs, already depends on it, so it adds no
package to an install (pyproject.toml names it to say so)."""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .secret import Secret

MAX_BYTES = 1 << 20  # a certificate chain or a key is a few KiB; more is the wrong file


class TLSFileError(Exception):
    def __init__(self, key: str, message: str, hint: str = ""):
        super().__init__(message)
        self.key, self.hint = key, hint


@dataclass(frozen=True)
class TLSPair:
    certificate: str  # PEM, the server's certificate first, then its chain
    key: Secret       # PEM; never printed
    not_after: datetime.datetime
    names: tuple      # the DNS names it covers

    @property
    def digest(self) -> str:
        """What the cluster's copy is compared by (a hash: it reveals neither file)."""
        return hashlib.sha256(self.certificate.encode() + b"\0" + self.key.reveal().encode()).hexdigest()


def _read(path: Path, key: str, private: bool) -> bytes:
    try:
        info = path.stat()
        if not path.is_file():
            raise TLSFileError(key, f"{path} is not a file", "name the PEM file itself")
        if info.st_size > MAX_BYTES:
            raise TLSFileError(key, f"{path} is {info.st_size} bytes, not a PEM certificate or key",
                               "name the PEM file itself")
        if private and info.st_mode & 0o077:
            # The same rule as secrets.yaml: a private key others can read is no longer private.
            raise TLSFileError(key, f"mode {info.st_mode & 0o777:04o} lets other users read the private key {path}",
                               f"chmod 600 {path}")
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1)
    except OSError as e:
        raise TLSFileError(key, f"cannot read {path}: {e.strerror}", "paths are relative to the inventory file") from None


def covers(pattern: str, hostname: str) -> bool:
    """RFC 6125 6.4.3 as browsers apply it: a wildcard stands for exactly one whole left-most label."""
    pattern, hostname = pattern.lower().rstrip("."), hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def load_pair(cert_path: Path, key_path: Path, hostname: str, now: datetime.datetime = None) -> TLSPair:
    """The pair, or TLSFileError naming the inventory key (hub.tls_certificate / hub.tls_key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert_key, key_key = "hub.tls_certificate", "hub.tls_key"
    cert_bytes = _read(cert_path, cert_key, private=False)
    key_bytes = _read(key_path, key_key, private=True)
    try:
        chain = x509.load_pem_x509_certificates(cert_bytes)
    except ValueError:
        raise TLSFileError(cert_key, f"{cert_path} holds no PEM certificate",
                           "give the certificate as PEM (-----BEGIN CERTIFICATE-----), the server's first, "
                           "then the intermediates") from None
    try:
        private = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:
        raise TLSFileError(key_key, f"{key_path} is encrypted with a passphrase: the proxy cannot read it",
                           "decrypt it: openssl pkey -in KEY -out KEY.plain (then chmod 600)") from None
    except Exception as e:  # ValueError, UnsupportedAlgorithm: cryptography raises several kinds
        raise TLSFileError(key_key, f"{key_path} holds no PEM private key ({type(e).__name__})",
                           "give the private key as PEM (-----BEGIN PRIVATE KEY-----)") from None
    leaf = chain[0]
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*raw) != leaf.public_key().public_bytes(*raw):
        raise TLSFileError(key_key, f"{key_path} is not the key of the certificate in {cert_path}",
                           "give the key the certificate was issued for (the first certificate of the file)")
    try:
        dns = tuple(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    if not any(covers(name, hostname) for name in dns):
        # Browsers match the subject alternative names only (CA/Browser Forum baseline, RFC 6125).
        raise TLSFileError(cert_key, f"the certificate in {cert_path} does not cover hub.hostname {hostname}: it names "
                           + (", ".join(dns) or "no DNS name (no subjectAltName)"),
                           "ask for a certificate with the hub's name as a subject alternative name")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc <= now:
        raise TLSFileError(cert_key, f"the certificate in {cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}",
                           "renew it with your institution and name the new file")
    if leaf.not_valid_before_utc > now:
        raise TLSFileError(cert_key, f"the certificate in {cert_path} is valid only from "
                           f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC", "check this machine's clock, or wait")
    text = cert_bytes.decode("ascii", "replace")
    return TLSPair(text, Secret(key_bytes.decode("ascii", "replace")), leaf.not_valid_after_utc, dns)
