"""Reading certificates and CRLs, and deciding whether a certificate is trusted.

Why an explicit chain walk instead of ``cryptography.x509.verification.PolicyBuilder``: the
installed ``cryptography`` offers a client verifier with configurable extension policies, but it
still applies the CA/Browser-Forum web-PKI profile underneath (permitted signature algorithms and
key sizes, serial and validity encoding rules, a subjectAltName on the leaf) and reports every
failure as one opaque ``VerificationError`` string. Government signing certificates are not web
certificates, and an administrator needs to be told *which* rule failed (expired on a date,
issued by an unknown CA, revoked, wrong key usage). So this module walks the chain itself, with
the rules that suit signing certificates:

* every link: the issuer's name matches and its key verifies the signature
  (``Certificate.verify_directly_issued_by``), at most :data:`MAX_DEPTH` links, ending at a
  configured trust anchor; intermediates come from the configuration or from the same bundle;
* issuers (not anchors, which the administrator chose): basicConstraints CA, keyCertSign when
  keyUsage is present, pathLenConstraint;
* every certificate of the chain is inside its validity period;
* the leaf: not a CA; keyUsage, when present, allows digitalSignature or nonRepudiation;
  extendedKeyUsage, when present, allows e-mail protection, client authentication, document
  signing or any purpose (a web-server-only certificate is refused);
* revocation: the newest imported CRL of each issuer in the chain (looked up by the caller).

Nothing here touches the database; revocation is asked through a callable.
"""

from __future__ import annotations

import hashlib
import unicodedata
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from provisioning.config import Settings
from provisioning.errors import ConfigError, InvalidInput

MAX_DEPTH = 8
MAX_CRL_BYTES = 50 * 1024 * 1024
FORMATS_HINT = "give a PEM, DER or PKCS#7 (.p7b) file as issued by the certification authority"
SIGNING_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
    ObjectIdentifier("1.2.840.113583.1.1.5"),  # Adobe PDF signing
    ObjectIdentifier("1.3.6.1.5.5.7.3.36"),  # id-kp-documentSigning (RFC 9336)
}
_PARSE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)

# A revocation lookup: (issuer name hash, serial hex) -> (revoked at, reason) or None.
RevocationLookup = Callable[[str, str], "tuple[datetime, str | None] | None"]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(number: int) -> str:
    """A serial number as upper-case hex (serials are up to 20 bytes)."""
    return format(number, "X")


def name_hash(name: x509.Name) -> str:
    """SHA-256 of a name's DER: how issuers are matched and indexed."""
    return hashlib.sha256(name.public_bytes()).hexdigest()


def show_name(name: x509.Name) -> str:
    """A name as an RFC 4514 string, Vietnamese letters kept as written (NFC)."""
    return unicodedata.normalize("NFC", name.rfc4514_string())


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def emails(cert: x509.Certificate) -> list[str]:
    """The e-mail addresses a certificate carries (subjectAltName rfc822Name, subject emailAddress)."""
    found = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found += san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        pass
    return sorted({e.strip().lower() for e in found if e.strip()})


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def load_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (one or more), a DER file or a PKCS#7 bundle (PEM or DER).

    :raises InvalidInput: empty, or none of those formats (``field`` is ``file``, value ``source``).
    """
    if not data.strip():
        raise InvalidInput("file", source, "is empty", FORMATS_HINT)
    try:
        if b"-----BEGIN PKCS7-----" in data:
            certs = pkcs7.load_pem_pkcs7_certificates(data)
        elif b"-----BEGIN CERTIFICATE-----" in data:
            certs = x509.load_pem_x509_certificates(data)
        elif data.lstrip().startswith(b"-----BEGIN"):
            raise ValueError("a PEM block that is not a certificate")
        else:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                certs = pkcs7.load_der_pkcs7_certificates(data)
        for cert in certs:  # extensions are parsed lazily: a malformed one must fail here
            _ = cert.extensions, cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except _PARSE_ERRORS:
        raise InvalidInput("file", source, "is not a readable X.509 certificate", FORMATS_HINT) from None
    if not certs:
        raise InvalidInput("file", source, "holds no certificate", FORMATS_HINT)
    return certs


def split_leaf(certs: Sequence[x509.Certificate], source: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """(the holder's certificate, the CA certificates that came with it).

    :raises InvalidInput: no end-entity certificate, or more than one.
    """
    leaves = [c for c in certs if not is_ca(c)]
    if not leaves:
        raise InvalidInput("file", source, "holds only CA certificates, no holder's certificate",
                           "give the official's or agency's own certificate, not the authority's")
    if len(leaves) > 1:
        raise InvalidInput("file", source, f"holds {len(leaves)} holders' certificates",
                           "give one holder's certificate per file (its CA chain may come with it)")
    return leaves[0], [c for c in certs if is_ca(c)]


@dataclass(frozen=True)
class TrustStore:
    """The configured trust anchors (roots) and known intermediate CA certificates."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def authorities(self) -> tuple[x509.Certificate, ...]:
        return self.anchors + self.intermediates


def load_trust_store(settings: Settings) -> TrustStore:
    """The trust anchors and intermediates named in ``[certificates]``.

    :raises ConfigError: no trust anchor configured, or a file missing or unreadable.
    """
    conf = settings.certificates
    if not conf.trust_anchors:
        raise ConfigError(
            "configuration [certificates] trust_anchors is empty: name the root certificate file(s) of "
            "the government certification authority (see docs/certificates.md)")

    def read(key: str, names: Sequence[str]) -> tuple[x509.Certificate, ...]:
        out: list[x509.Certificate] = []
        for name in names:
            path = settings.path(name)
            try:
                out += load_certificates(path.read_bytes(), str(path))
            except OSError as exc:
                raise ConfigError(f"configuration [certificates] {key}: cannot read {path} ({exc.strerror})") from None
            except InvalidInput as exc:
                raise ConfigError(f"configuration [certificates] {key}: {exc}") from None
        return tuple(out)

    return TrustStore(read("trust_anchors", conf.trust_anchors), read("intermediates", conf.intermediates))


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`validate`.

    ``status``: valid | expired | not_yet_valid | revoked | untrusted | unsuitable; ``reason`` says
    why in plain words (empty when valid); ``chain`` is leaf first, up to the anchor when found.
    """

    status: str
    reason: str
    chain: tuple[x509.Certificate, ...]

    @property
    def valid(self) -> bool:
        return self.status == "valid"


def _find_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> tuple[x509.Certificate | None, str]:
    """The candidate that issued ``cert`` (name matches and signature verifies), else a reason."""
    problem = ""
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
            return candidate, ""
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            problem = (f"its signature does not verify with the key of {show_name(candidate.subject)} "
                       f"(forged or damaged certificate)")
    return None, problem


def _suitability(leaf: x509.Certificate) -> str:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return ("its key usage allows neither digitalSignature nor nonRepudiation, which a signing "
                    "certificate needs (ask the authority for a signing certificate)")
    except x509.ExtensionNotFound:
        pass
    try:
        purposes = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if not purposes & SIGNING_EKUS:
            shown = ", ".join(sorted(getattr(p, "_name", p.dotted_string) for p in purposes))
            return (f"its extended key usage ({shown}) is not for signing or e-mail (a web-server "
                    f"certificate cannot be bound; ask the authority for a signing certificate)")
    except x509.ExtensionNotFound:
        pass
    return ""


def _issuer_problem(ca: x509.Certificate, below: int) -> str:
    """Why ``ca`` may not issue the chain below it (``below`` intermediates under it), or ''."""
    name = show_name(ca.subject)
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"its issuer {name} is not marked as a certification authority (no basicConstraints)"
    if not constraints.ca:
        return f"its issuer {name} is not a certification authority (basicConstraints CA is false)"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"the chain is longer than {name} allows (pathLenConstraint {constraints.path_length})"
    try:
        if not ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            return f"its issuer {name} may not sign certificates (keyUsage without keyCertSign)"
    except x509.ExtensionNotFound:
        pass
    return ""


def validate(
    leaf: x509.Certificate, bundled: Sequence[x509.Certificate], store: TrustStore, now: datetime,
    revoked: RevocationLookup,
) -> Verdict:
    """Check ``leaf`` against the trust store at time ``now`` (timezone-aware).

    ``bundled`` are CA certificates that came with it (untrusted until they chain to an anchor).
    Never raises for a bad certificate: the verdict says what is wrong.
    """
    chain = [leaf]
    unsuitable = _suitability(leaf)
    if unsuitable:
        return Verdict("unsuitable", unsuitable, tuple(chain))
    pool = [*store.intermediates, *bundled]
    current = leaf
    while True:
        anchor, anchor_problem = _find_issuer(current, store.anchors)
        if anchor is not None:
            if anchor is not current:
                chain.append(anchor)
            break
        issuer, problem = _find_issuer(current, [c for c in pool if c not in chain])
        if issuer is None:
            problem = anchor_problem or problem or (
                f"it was issued by {show_name(current.issuer)}, which is not a configured trust anchor "
                f"or intermediate ([certificates] trust_anchors, intermediates)")
            if current is not leaf:
                problem = f"its chain stops at {show_name(current.subject)}: {problem}"
            return Verdict("untrusted", problem, tuple(chain))
        problem = _issuer_problem(issuer, len(chain) - 1)
        if problem:
            return Verdict("untrusted", problem, tuple(chain))
        chain.append(issuer)
        current = issuer
        if len(chain) > MAX_DEPTH:
            return Verdict("untrusted", f"its chain is longer than {MAX_DEPTH} certificates", tuple(chain))
    for position, cert in enumerate(chain):
        who = "it" if position == 0 else f"the issuing CA certificate {show_name(cert.subject)}"
        if now < cert.not_valid_before_utc:
            status = "not_yet_valid" if position == 0 else "untrusted"
            return Verdict(status, f"{who} is valid only from {iso(cert.not_valid_before_utc)}", tuple(chain))
        if now > cert.not_valid_after_utc:
            return Verdict("expired", f"{who} expired on {iso(cert.not_valid_after_utc)}", tuple(chain))
    for position, cert in enumerate(chain[:-1]):
        hit = revoked(name_hash(cert.issuer), serial_hex(cert.serial_number))
        if hit is not None:
            who = "it" if position == 0 else f"the issuing CA certificate {show_name(cert.subject)}"
            why = f" ({hit[1]})" if hit[1] else ""
            return Verdict("revoked", f"{who} was revoked on {iso(hit[0])}{why}, by the CRL of "
                                      f"{show_name(cert.issuer)}", tuple(chain))
    return Verdict("valid", "", tuple(chain))


# --- CRLs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Crl:
    """A parsed CRL whose signature was verified by a configured CA."""

    crl: x509.CertificateRevocationList
    issuer: str
    issuer_hash: str
    source: str

    def entries(self) -> list[tuple[str, datetime, str | None]]:
        """(serial hex, revoked at, reason or None) for every revoked certificate."""
        out = []
        for item in self.crl:
            try:
                reason = item.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = None
            out.append((serial_hex(item.serial_number), item.revocation_date_utc, reason))
        return out


def load_crl(data: bytes, source: str, store: TrustStore) -> Crl:
    """Parse a CRL (PEM or DER) and check it was signed by a configured CA.

    :raises InvalidInput: not a CRL, or not signed by a trust anchor or intermediate.
    """
    try:
        if b"-----BEGIN" in data:
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        issuer = show_name(crl.issuer)
        _ = crl.last_update_utc, crl.next_update_utc, [(r.serial_number, r.extensions) for r in crl]
    except _PARSE_ERRORS:
        raise InvalidInput("file", source, "is not a readable certificate revocation list (CRL)",
                           "give the CRL file (PEM or DER) published by the certification authority") from None
    for ca in store.authorities:
        if ca.subject == crl.issuer:
            try:
                if crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                    return Crl(crl, issuer, name_hash(crl.issuer), source)
            except (TypeError, UnsupportedAlgorithm):
                continue
    raise InvalidInput("file", source, f"is a CRL of {issuer}, but no configured trust anchor or intermediate "
                       "signed it", "import CRLs of the configured authorities only, or add the CA certificate "
                       "to [certificates] intermediates")


def distribution_points(cert: x509.Certificate) -> list[str]:
    """The http(s) URLs of the certificate's CRL distribution points."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(("http://", "https://")):
                urls.append(name.value)
    return urls


def fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` (a CRL distribution point), at most :data:`MAX_CRL_BYTES`.

    :raises OSError: unreachable, an HTTP error, a timeout or a too large answer.
    """
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (http(s) only, checked above)
        data = answer.read(MAX_CRL_BYTES + 1)
    if len(data) > MAX_CRL_BYTES:
        raise OSError(f"the CRL at {url} is larger than {MAX_CRL_BYTES} bytes")
    return data


def read_file(path: Path) -> bytes:
    """The bytes of a certificate or CRL file. :raises InvalidInput: missing or unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput("file", str(path), f"cannot be read ({exc.strerror})", "check the path") from None
