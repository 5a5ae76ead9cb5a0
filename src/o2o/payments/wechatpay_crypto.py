"""WeChat Pay API v3 cryptography: signing, verification, AES-256-GCM and RSA-OAEP.

Pure functions over ``cryptography`` primitives so that the adapter and the test fake
(tests/fakes/wechatpay_server.py) share one implementation of the wire formats.
"""

from __future__ import annotations

import base64
import re
import secrets
import string

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_SCHEME = "WECHATPAY2-SHA256-RSA2048"
AEAD_ALGORITHM = "AEAD_AES_256_GCM"

_NONCE_ALPHABET = string.ascii_uppercase + string.digits
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def new_nonce(length: int = 32) -> str:
    """Random nonce_str; WeChat Pay allows up to 32 characters of [A-Z0-9]."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(_as_bytes(pem), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay merchant key must be an RSA private key")
    return key


def certificate_serial(cert: x509.Certificate) -> str:
    """A certificate's serial number as WeChat Pay writes it: the bytes of the number in
    upper-case hex, so a leading zero nibble is kept (``0798AB…``, not ``798AB…``) — what the
    official SDKs produce (wechatpay-go ``fmt.Sprintf("%X", serial.Bytes())``)."""
    number = cert.serial_number
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big").hex().upper()


def load_public_key(pem: str | bytes) -> tuple[rsa.RSAPublicKey, str | None]:
    """Load a platform public key (``pub_key.pem``) or a platform certificate.

    Returns the key and, for a certificate, its serial number in WeChat's notation
    (``certificate_serial``) so the caller can use it as the ``Wechatpay-Serial`` to expect.
    """
    data = _as_bytes(pem)
    if b"BEGIN CERTIFICATE" in data:
        cert = x509.load_pem_x509_certificate(data)
        key = cert.public_key()
        serial: str | None = certificate_serial(cert)
    else:
        key = serialization.load_pem_public_key(data)
        serial = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay platform key must be an RSA public key")
    return key, serial


def public_key_pem(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def rsa_sign(private_key: rsa.RSAPrivateKey, message: str | bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64 — the only scheme WeChat Pay v3 uses."""
    signature = private_key.sign(_as_bytes(message), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(public_key: rsa.RSAPublicKey, message: str | bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, _as_bytes(message), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def request_message(method: str, url_path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The string a merchant signs: ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``."""
    head = f"{method.upper()}\n{url_path}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The string WeChat Pay signs on responses and notifications."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def jsapi_sign_message(appid: str, timestamp: str, nonce: str, package: str) -> str:
    return f"{appid}\n{timestamp}\n{nonce}\n{package}\n"


def build_authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    url_path: str,
    body: bytes,
    timestamp: int,
    nonce: str,
) -> str:
    signature = rsa_sign(
        private_key, request_message(method, url_path, str(timestamp), nonce, body)
    )
    return (
        f'{SIGNATURE_SCHEME} mchid="{mchid}",nonce_str="{nonce}",'
        f'signature="{signature}",timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> dict[str, str]:
    """Split an ``Authorization`` header into its parameters; ValueError when malformed."""
    scheme, _, params = header.strip().partition(" ")
    if scheme != SIGNATURE_SCHEME:
        raise ValueError(f"unsupported authorization scheme: {scheme!r}")
    parsed = dict(_AUTH_PARAM.findall(params))
    missing = {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} - parsed.keys()
    if missing:
        raise ValueError(f"authorization lacks {', '.join(sorted(missing))}")
    return parsed


def aes_gcm_encrypt(key: bytes, nonce: str, plaintext: bytes, associated_data: str) -> str:
    data = AESGCM(key).encrypt(nonce.encode("utf-8"), plaintext, associated_data.encode("utf-8"))
    return base64.b64encode(data).decode("ascii")


def aes_gcm_decrypt(key: bytes, nonce: str, ciphertext_b64: str, associated_data: str) -> bytes:
    """Raises ``cryptography.exceptions.InvalidTag`` when anything was tampered with."""
    data = base64.b64decode(ciphertext_b64, validate=True)
    return AESGCM(key).decrypt(nonce.encode("utf-8"), data, associated_data.encode("utf-8"))


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, plaintext: str) -> str:
    """Sensitive fields (e.g. a profit-sharing receiver's name): RSA-OAEP with SHA-1."""
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - WeChat's format
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), oaep)).decode("ascii")


def rsa_oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext_b64: str) -> str:
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - WeChat's format
    return private_key.decrypt(base64.b64decode(ciphertext_b64), oaep).decode("utf-8")
