"""A throw-away certification authority for the certificate tests, built with ``cryptography``,
and the fixtures and helpers the certificate tests share.

``Pki.make(folder)`` writes a root and an intermediate CA (EC P-256, fast to generate) and can
issue leaves (signing certificates by default; web-server ones on request), CRLs, and files in
every format a province receives: PEM, DER, PKCS#7 bundles in PEM and DER.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import pytest
from sqlalchemy import select

from provisioning import accounts, agencies, certificates, trust
from provisioning.accounts import NewAccount
from provisioning.models import AuditEntry, Certificate
from tests.conftest import Govmail, config_data, write_config

LAM_CN, SKHDT_O = "Nguyễn Thị Lâm", "Sở Kế hoạch và Đầu tư"
LAM_SUBJECT = f"CN={LAM_CN},O={SKHDT_O},C=VN"


def now() -> datetime:
    return datetime.now(timezone.utc)


def name(cn: str, org: str | None = None, email: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


@dataclass
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _ca(subject: x509.Name, issuer: Authority | None, path_length: int | None,
        not_before: datetime | None = None, not_after: datetime | None = None) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now() - timedelta(days=365))
               .not_valid_after(not_after or now() + timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    return Authority(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@dataclass
class Pki:
    """Root -> intermediate, and files written into ``folder``."""

    folder: Path
    root: Authority
    intermediate: Authority

    @classmethod
    def make(cls, folder: Path, label: str = "Chính phủ") -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        root = _ca(name(f"Cơ quan chứng thực số {label} (gốc)", "Ban Cơ yếu Chính phủ"), None, 1)
        intermediate = _ca(name(f"Cơ quan chứng thực số {label}", "Ban Cơ yếu Chính phủ"), root, 0)
        pki = cls(folder, root, intermediate)
        pki.write("root.pem", [root.cert])
        pki.write("intermediate.pem", [intermediate.cert])
        return pki

    def issue(
        self, cn: str = LAM_CN, org: str | None = SKHDT_O, *, email: str | None = None, san_email: str | None = None,
        not_before: datetime | None = None, not_after: datetime | None = None, usage: str = "signing",
        issuer: Authority | None = None, crl_url: str | None = None, serial: int | None = None,
    ) -> x509.Certificate:
        """A leaf certificate. ``usage``: ``signing`` (digitalSignature + nonRepudiation, e-mail
        protection and client authentication), ``server`` (a web server's: digitalSignature,
        serverAuth) or ``encryption`` (keyEncipherment only)."""
        issuer = issuer or self.intermediate
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn, org, email)).issuer_name(issuer.cert.subject)
                   .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
                   .not_valid_before(not_before or now() - timedelta(days=1))
                   .not_valid_after(not_after or now() + timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=usage != "encryption", content_commitment=usage == "signing",
                       key_encipherment=usage == "encryption",
                       data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                       encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH] if usage == "server"
                       else [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if san_email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(san_email)]), critical=False)
        if crl_url:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
        return builder.sign(issuer.key, hashes.SHA256())

    def crl(self, revoked: Sequence[x509.Certificate] = (), *, issuer: Authority | None = None,
            this_update: datetime | None = None, next_update: datetime | None = None) -> bytes:
        """A DER CRL of ``issuer`` (default: the intermediate) listing ``revoked``."""
        issuer = issuer or self.intermediate
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
                   .last_update(this_update or now() - timedelta(hours=1))
                   .next_update(next_update or now() + timedelta(days=7)))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(now() - timedelta(minutes=30))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(Encoding.DER)

    def write(self, filename: str, certs: Sequence[x509.Certificate], fmt: str = "pem") -> Path:
        """Write ``certs`` as ``pem`` (concatenated), ``der`` (first only), ``p7b-pem`` or ``p7b-der``."""
        path = self.folder / filename
        if fmt == "pem":
            path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
        elif fmt == "der":
            path.write_bytes(certs[0].public_bytes(Encoding.DER))
        else:
            path.write_bytes(pkcs7.serialize_certificates(list(certs), Encoding.PEM if fmt == "p7b-pem" else Encoding.DER))
        return path

    def write_bytes(self, filename: str, data: bytes) -> Path:
        path = self.folder / filename
        path.write_bytes(data)
        return path


def with_trust(gm: Govmail, pki: Pki, tmp_path: Path, *, intermediates: bool = True, **extra: object) -> Govmail:
    """``gm`` with a configuration whose [certificates] trusts ``pki`` (plus ``extra`` settings:
    ``certificates``/``gateway`` dicts are merged into those sections)."""
    from provisioning.config import load_settings

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = config_data(gm.slapd, gm.settings.database.url, gm.settings.directory.base_dn, tmp_path)
    data["certificates"] = {"trust_anchors": [str(pki.folder / "root.pem")],
                            "intermediates": [str(pki.folder / "intermediate.pem")] if intermediates else [],
                            **extra.pop("certificates", {})}  # type: ignore[dict-item]
    for section, values in extra.items():
        data[section] = {**data.get(section, {}), **values}  # type: ignore[dict-item]
    config_file = write_config(tmp_path / "govmail-cert.toml", data)
    return dataclasses.replace(gm, settings=load_settings(config_file, env={}), config_file=config_file)


PROVINCE, SKHDT, SNV = "000.00.00.H62", "000.00.15.H62", "000.00.16.H62"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA that is not configured anywhere (same names as the real one: only keys differ)."""
    return Pki.make(tmp_path_factory.mktemp("rogue"))


@pytest.fixture
def cg(gm: Govmail, pki: Pki, tmp_path: Path) -> Govmail:
    """``gm`` trusting ``pki``, with a province, two departments, two officials and a shared mailbox."""
    g = with_trust(gm, pki, tmp_path)
    with g.session() as s, s.begin():
        for code, name, parent, short in ((PROVINCE, "UBND tỉnh Vĩnh Phúc", None, None),
                                          (SKHDT, "Sở Kế hoạch và Đầu tư", PROVINCE, "skhdt"),
                                          (SNV, "Sở Nội vụ", PROVINCE, "snv")):
            agencies.add_agency(s, g.settings, g.actor, agencies.parse_fields(g.settings, {
                "code": code, "name": name, "level": "province", "parent": parent, "short_name": short,
                "domain": "vinhphuc.gov.vn"}))
        accounts.create_account(s, g.settings, g.actor, NewAccount(agency=SKHDT, full_name="Nguyễn Thị Lâm",
                                                                  title="Phó Giám đốc"))
        accounts.create_account(s, g.settings, g.actor, NewAccount(agency=SKHDT, full_name="Trần Văn Đức",
                                                                  title="Chuyên viên"))
        # The agency's shared mailbox stands for its admins (reminders go there).
        accounts.create_account(s, g.settings, g.actor, NewAccount(agency=SKHDT, full_name="Văn thư Sở KHĐT",
                                                                  kind="shared", address="vanthu"))
    g.sync()
    return g


def store(g: Govmail) -> trust.TrustStore:
    return trust.load_trust_store(g.settings)


def bind(g: Govmail, path: Path, account: str | None = None, agency: str | None = None, when=None) -> Certificate:
    with g.session() as s, s.begin():
        parsed = certificates.parse(path.read_bytes(), path.name)
        holder = certificates.resolve_holder(s, account, agency)
        return certificates.bind(s, g.actor, store(g), parsed, holder, when)


def published(g: Govmail, dn: str) -> list[bytes]:
    """The certificates on an entry, whichever name the server gives the attribute."""
    with g.directory.connect() as conn:
        conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["userCertificate;binary"])
        raw = conn.response[0]["raw_attributes"]
    return sorted(v for k, vals in raw.items() if k.split(";")[0].lower() == "usercertificate" for v in vals)


def der(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(Encoding.DER)


def audit_actions(g: Govmail) -> list[str]:
    with g.session() as s:
        return list(s.scalars(select(AuditEntry.action).where(AuditEntry.object_kind.in_(("certificate", "crl")))
                              .order_by(AuditEntry.id)))
