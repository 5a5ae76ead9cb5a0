"""WeChat Pay platform keys: the public key (推荐) or the platform certificates, by serial.

Two ways a merchant verifies WeChat Pay's signatures and encrypts sensitive fields for it:

* **Public-key mode** (the recommended default): one ``pub_key.pem`` and its ``PUB_KEY_ID_…``.
* **Certificate mode** (merchants still on 平台证书): the certificates come from
  ``GET /v3/certificates``, each encrypted with the merchant's APIv3 key (AES-256-GCM,
  ``associated_data`` "certificate"). WeChat Pay rotates them: a new certificate is listed
  before it is used, and for a while responses and notifications may be signed with either.
  ``PlatformKeys`` keeps every certificate of the last download, downloads again when a
  signature names a serial it does not know (at most once a minute, so forged serials cannot
  make us hammer the API) and every ``REFRESH_EVERY`` — never per request. Sensitive fields are
  encrypted with the newest certificate (latest ``effective_time``), as the official SDKs do.

The download's own answer is signed; it is verified against a key we already trust or, on the
very first download, against the certificates it carries — which only WeChat Pay can have
encrypted with our APIv3 key (the official SDKs bootstrap the same way).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa

from o2o.payments.wechatpay_crypto import (
    AEAD_ALGORITHM,
    aes_gcm_decrypt,
    certificate_serial,
    load_public_key,
)

__all__ = [
    "CERTIFICATES_PATH",
    "PlatformCertificate",
    "PlatformKeys",
    "decrypt_certificates",
]

log = logging.getLogger(__name__)

CERTIFICATES_PATH = "/v3/certificates"
# Certificates are downloaded again this often even when nothing asks for a new serial.
REFRESH_EVERY = 12 * 3600.0
# An unknown serial triggers a download at most this often.
UNKNOWN_SERIAL_GAP = 60.0


@dataclass(frozen=True)
class PlatformCertificate:
    serial_no: str
    effective_time: datetime
    expire_time: datetime
    pem: str
    public_key: rsa.RSAPublicKey


def _aware(value: Any, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"certificate {name} is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"certificate {name} has no time zone: {value!r}")
    return parsed


def decrypt_certificates(
    apiv3_key: bytes, payload: Mapping[str, Any], *, now: datetime | None = None
) -> list[PlatformCertificate]:
    """The certificates of a ``GET /v3/certificates`` answer, decrypted and checked.

    ValueError when an entry does not decrypt (wrong APIv3 key or tampered), is not a
    certificate, or names a serial that is not the certificate's own. Certificates already
    expired at ``now`` are left out.
    """
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise ValueError("no certificates in the answer")
    found = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ValueError("certificate entry is not an object")
        encrypted = item.get("encrypt_certificate")
        if not isinstance(encrypted, Mapping) or encrypted.get("algorithm") != AEAD_ALGORITHM:
            raise ValueError("certificate entry is not AEAD_AES_256_GCM encrypted")
        try:
            pem = aes_gcm_decrypt(
                apiv3_key,
                str(encrypted["nonce"]),
                str(encrypted["ciphertext"]),
                str(encrypted.get("associated_data") or ""),
            )
            cert = x509.load_pem_x509_certificate(pem)
        except KeyError as exc:
            raise ValueError(f"certificate entry lacks {exc}") from None
        except InvalidTag:
            raise ValueError("certificate does not decrypt with the APIv3 key") from None
        serial = certificate_serial(cert)
        if serial != str(item.get("serial_no", "")).strip().upper():
            raise ValueError(f"listed serial {item.get('serial_no')!r} is not the certificate's")
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("platform certificate key is not RSA")
        expire = _aware(item.get("expire_time"), "expire_time")
        if now is not None and expire <= now:
            continue
        found.append(
            PlatformCertificate(
                serial_no=serial,
                effective_time=_aware(item.get("effective_time"), "effective_time"),
                expire_time=expire,
                pem=pem.decode("ascii"),
                public_key=public_key,
            )
        )
    if not found:
        raise ValueError("every listed certificate has expired")
    return found


class PlatformKeys:
    """Serial → platform public key, for verifying and for encrypting. Thread-safe.

    ``static``: configured keys (a public key under its ``PUB_KEY_ID``, a configured
    certificate under its serial). ``fetch``: downloads the current certificates (certificate
    mode); None in public-key mode.
    """

    def __init__(
        self,
        static: Mapping[str, rsa.RSAPublicKey],
        *,
        primary_serial: str | None,
        fetch: Callable[[], list[PlatformCertificate]] | None = None,
        clock: Callable[[], float],
    ) -> None:
        self._static = {serial.strip().upper(): key for serial, key in static.items()}
        self._primary = primary_serial.strip().upper() if primary_serial else None
        self._fetch = fetch
        self._clock = clock
        self._downloaded: dict[str, PlatformCertificate] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._unknown_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, pems: Mapping[str, str], *, clock: Callable[[], float]) -> PlatformKeys:
        return cls(
            {serial: load_public_key(pem)[0] for serial, pem in pems.items()},
            primary_serial=None,
            clock=clock,
        )

    @property
    def downloads(self) -> bool:
        return self._fetch is not None

    @property
    def primary_serial(self) -> str:
        return self.encryption_key()[0]

    def known(self) -> dict[str, rsa.RSAPublicKey]:
        with self._lock:
            keys = dict(self._static)
            keys.update({s: c.public_key for s, c in self._downloaded.items()})
            return keys

    def certificates(self) -> list[PlatformCertificate]:
        with self._lock:
            return sorted(self._downloaded.values(), key=lambda c: c.effective_time)

    def get(self, serial: str) -> rsa.RSAPublicKey | None:
        """The key for ``serial``; in certificate mode an unknown serial (a rotation) makes us
        download the certificates again first (at most once a minute)."""
        wanted = serial.strip().upper()
        self._refresh_if_due(quiet=True)
        key = self.known().get(wanted)
        if key is None and self._fetch is not None and self._may_look_up_unknown():
            try:
                self.refresh()
            except Exception as exc:  # unverifiable then: the caller rejects, WeChat retries
                log.warning("downloading WeChat Pay platform certificates failed: %s", exc)
            key = self.known().get(wanted)
        return key

    def encryption_key(self) -> tuple[str, rsa.RSAPublicKey]:
        """(serial, key) to encrypt sensitive fields with and name in ``Wechatpay-Serial``:
        the public key, or the newest platform certificate."""
        if self._fetch is not None:
            self._refresh_if_due(quiet=bool(self._static) or bool(self.certificates()))
            newest = self.certificates()
            if newest:
                cert = newest[-1]
                return cert.serial_no, cert.public_key
        if self._primary and self._primary in self._static:
            return self._primary, self._static[self._primary]
        if self._static:
            serial = next(iter(self._static))
            return serial, self._static[serial]
        raise ValueError("no WeChat Pay platform key or certificate is available yet")

    def refresh(self) -> None:
        """Download the certificates now (one download at a time)."""
        if self._fetch is None:
            return
        with self._lock:
            self._tried_at = self._clock()
        certificates = self._fetch()
        with self._lock:
            self._downloaded = {c.serial_no: c for c in certificates}
            self._fetched_at = self._clock()

    def _refresh_if_due(self, *, quiet: bool) -> None:
        """Download when never done (retrying a failed first download at most once a minute)
        or older than ``REFRESH_EVERY``. ``quiet``: a failure is logged, the keys we have stay
        in use; otherwise it is raised (nothing to work with yet)."""
        if self._fetch is None:
            return
        with self._lock:
            fetched = self._fetched_at
            tried = self._tried_at
        now = self._clock()
        never = fetched is None and (tried is None or now - tried >= UNKNOWN_SERIAL_GAP)
        stale = fetched is not None and now - fetched >= REFRESH_EVERY and self._may_retry()
        if not (never or stale):
            return
        try:
            self.refresh()
        except Exception as exc:
            if not quiet:
                raise
            log.warning("downloading WeChat Pay platform certificates failed: %s", exc)

    def _may_retry(self) -> bool:
        with self._lock:
            tried = self._tried_at
        return tried is None or self._clock() - tried >= UNKNOWN_SERIAL_GAP

    def _may_look_up_unknown(self) -> bool:
        """An unknown serial may trigger a download once a minute (a rotation needs one; a
        flood of forged serials gets no more)."""
        now = self._clock()
        with self._lock:
            if self._unknown_at is not None and now - self._unknown_at < UNKNOWN_SERIAL_GAP:
                return False
            self._unknown_at = now
            return True
