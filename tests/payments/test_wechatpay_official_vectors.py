"""Our WeChat Pay cryptography against the official Go SDK's published test vectors
(tests/payments/official_vectors.py says where each one comes from): signing, verification,
notification verification and AES-GCM decryption, certificate serials, the certificate download
answer, RSA-OAEP field encryption. If one of these fails, we no longer speak WeChat Pay's wire
format — whatever our own fake says."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from o2o.payments.wechatpay import (
    WeChatPayConfig,
    WeChatPayVerificationError,
    verify_wechatpay_signature,
)
from o2o.payments.wechatpay_certs import decrypt_certificates
from o2o.payments.wechatpay_crypto import (
    aes_gcm_decrypt,
    build_authorization,
    certificate_serial,
    load_private_key,
    load_public_key,
    parse_authorization,
    request_message,
    response_message,
    rsa_oaep_decrypt,
    rsa_oaep_encrypt,
    rsa_sign,
    rsa_verify,
)
from tests.payments import official_vectors as v

MCHID = "1234567890"


def _config(platform_pem: str) -> WeChatPayConfig:
    return WeChatPayConfig(
        mchid=MCHID,
        appid="wxd678efh567hg6787",
        private_key=v.private_key_pem(),
        merchant_serial_no="F5765756002FDD77",
        apiv3_key="0" * 32,  # the vector's own key is 16 bytes: decrypted separately below
        platform_public_key=platform_pem,
    )


# --------------------------------------------------------------------------- signing


def test_sha256_with_rsa_signature_of_the_sdk() -> None:
    key = load_private_key(v.private_key_pem())
    # PKCS#1 v1.5 signatures are deterministic: byte for byte the SDK's.
    assert rsa_sign(key, "source") == v.SIGNATURE_OF_SOURCE


def test_the_string_to_sign_is_the_sdks() -> None:
    # wechat_pay_credential_test.go: the message its signer receives, without and with a body.
    assert request_message("GET", "/v3/certificates", "1624523846", "A1B2C3D4E5F6G7", b"") == (
        b"GET\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\n\n"
    )
    assert request_message(
        "POST", "/v3/certificates", "1624523846", "A1B2C3D4E5F6G7", b"Hello World!\n"
    ) == (b"POST\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\nHello World!\n\n")


def test_authorization_header_carries_the_sdk_signature() -> None:
    key = load_private_key(v.private_key_pem())
    header = build_authorization(
        mchid=MCHID,
        serial_no="F5765756002FDD77",
        private_key=key,
        method="GET",
        url_path="/v3/certificates",
        body=b"",
        timestamp=1624523846,
        nonce="A1B2C3D4E5F6G7",
    )
    params = parse_authorization(header)
    assert params == {
        "mchid": MCHID,
        "nonce_str": "A1B2C3D4E5F6G7",
        "timestamp": "1624523846",
        "serial_no": "F5765756002FDD77",
        "signature": rsa_sign(key, b"GET\n/v3/certificates\n1624523846\nA1B2C3D4E5F6G7\n\n"),
    }


# --------------------------------------------------------------------------- verification


def test_sdk_signature_verifies_with_the_sdk_certificate() -> None:
    public_key, serial = load_public_key(v.CERT_F5765756002FDD77)
    assert serial == "F5765756002FDD77"
    assert rsa_verify(public_key, "source", v.SIGNATURE_OF_SOURCE)
    assert not rsa_verify(public_key, "wrong source", v.SIGNATURE_OF_SOURCE)
    assert not rsa_verify(public_key, "source", "")


def test_sdk_notification_verifies_and_decrypts() -> None:
    body = v.NOTIFICATION_BODY.encode("utf-8")
    config = _config(v.CERT_D7CE59D1F522D701)
    # Signature, serial (from the certificate) and the 5-minute window at the SDK's own time.
    verify_wechatpay_signature(config, v.NOTIFICATION_HEADERS, body, now=v.NOTIFICATION_TIMESTAMP)
    resource = json.loads(body)["resource"]
    assert (resource["algorithm"], resource["original_type"]) == ("AEAD_AES_256_GCM", "payscore")
    plaintext = aes_gcm_decrypt(
        v.NOTIFICATION_APIV3_KEY.encode(),
        resource["nonce"],
        resource["ciphertext"],
        resource["associated_data"],
    )
    assert plaintext.decode("utf-8") == v.NOTIFICATION_PLAINTEXT
    assert json.loads(plaintext)["out_contract_code"] == "21640bdbd08e473e828f3206a2741c6e"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"Wechatpay-Nonce": "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBZ"}, "signature"),
        ({"Wechatpay-Serial": "F5765756002FDD77"}, "serial"),
        ({"Wechatpay-Timestamp": "1624523847"}, "signature"),
    ],
)
def test_sdk_notification_altered_is_rejected(change: dict[str, str], reason: str) -> None:
    headers = {**v.NOTIFICATION_HEADERS, **change}
    with pytest.raises(WeChatPayVerificationError) as exc:
        verify_wechatpay_signature(
            _config(v.CERT_D7CE59D1F522D701),
            headers,
            v.NOTIFICATION_BODY.encode(),
            now=v.NOTIFICATION_TIMESTAMP,
        )
    assert exc.value.reason == reason


def test_sdk_notification_is_stale_six_minutes_later() -> None:
    with pytest.raises(WeChatPayVerificationError) as exc:
        verify_wechatpay_signature(
            _config(v.CERT_D7CE59D1F522D701),
            v.NOTIFICATION_HEADERS,
            v.NOTIFICATION_BODY.encode(),
            now=v.NOTIFICATION_TIMESTAMP + 360,
        )
    assert exc.value.reason == "timestamp"


def test_response_message_is_what_the_sdk_validator_checks() -> None:
    # validator_test.go: "<timestamp>\nNONCE1234567890\nBODY\n" (and an empty body).
    assert response_message("1624523846", "NONCE1234567890", b"BODY") == (
        b"1624523846\nNONCE1234567890\nBODY\n"
    )
    assert response_message("1624523846", "NONCE1234567890", b"") == (
        b"1624523846\nNONCE1234567890\n\n"
    )


# --------------------------------------------------------------------------- AES-GCM


def test_sdk_aes_gcm_vector() -> None:
    plaintext = aes_gcm_decrypt(
        v.AES_KEY.encode(), v.AES_NONCE, v.AES_CIPHERTEXT, v.AES_ASSOCIATED_DATA
    )
    assert plaintext == v.AES_PLAINTEXT.encode()


@pytest.mark.parametrize(
    ("key", "ciphertext", "error"),
    [
        ("testAPIv3Key1111", v.AES_CIPHERTEXT, InvalidTag),  # wrong key
        (v.AES_KEY, "SGVsbG8gV29ybGQK", InvalidTag),  # not this message
        (v.AES_KEY, "invalid cipher", ValueError),  # not base64
    ],
)
def test_sdk_aes_gcm_failures(key: str, ciphertext: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        aes_gcm_decrypt(key.encode(), v.AES_NONCE, ciphertext, v.AES_ASSOCIATED_DATA)


# --------------------------------------------------------------------------- serials


@pytest.mark.parametrize(
    ("pem", "serial"),
    [
        (v.TENPAY_CERT, v.TENPAY_CERT_SERIAL),  # 0C4A…: the leading zero nibble stays
        (v.CERT_D7CE59D1F522D701, "D7CE59D1F522D701"),
        (v.CERT_F5765756002FDD77, "F5765756002FDD77"),
    ],
)
def test_certificate_serials_are_written_byte_wise(pem: str, serial: str) -> None:
    assert certificate_serial(x509.load_pem_x509_certificate(pem.encode())) == serial
    assert load_public_key(pem)[1] == serial


def test_a_serial_below_0x10_verifies_notifications_signed_under_it() -> None:
    """The Tenpay certificate's serial starts 0C: configured with it, a notification naming
    ``0C4A…`` must find the key (``format(n, "X")`` would have made it ``C4A…``)."""
    config = WeChatPayConfig(
        mchid=MCHID,
        appid="wxd678efh567hg6787",
        private_key=v.private_key_pem(),
        merchant_serial_no="F5765756002FDD77",
        apiv3_key="0" * 32,
        platform_public_key=v.TENPAY_CERT,
    )
    headers = {**v.NOTIFICATION_HEADERS, "Wechatpay-Serial": v.TENPAY_CERT_SERIAL}
    with pytest.raises(WeChatPayVerificationError) as exc:
        verify_wechatpay_signature(
            config, headers, v.NOTIFICATION_BODY.encode(), now=v.NOTIFICATION_TIMESTAMP
        )
    # The key was found under the byte-wise serial; only the signature (made by another key)
    # fails — not "unknown serial".
    assert exc.value.reason == "signature"


# --------------------------------------------------------------------------- certificate download


def test_sdk_certificate_download_answer_decrypts() -> None:
    [cert] = decrypt_certificates(
        v.CERTIFICATES_APIV3_KEY.encode(), json.loads(v.CERTIFICATES_ANSWER)
    )
    assert cert.serial_no == "D7CE59D1F522D701"
    assert cert.pem.strip() == v.CERT_D7CE59D1F522D701.strip()
    assert cert.effective_time.isoformat() == "2021-04-27T16:55:23+08:00"
    assert cert.expire_time.isoformat() == "2031-04-25T16:55:23+08:00"
    with pytest.raises(ValueError, match="APIv3"):
        decrypt_certificates(b"mockAPIv3Key4321", json.loads(v.CERTIFICATES_ANSWER))
    forged = json.loads(v.CERTIFICATES_ANSWER)
    forged["data"][0]["serial_no"] = "F5765756002FDD77"
    with pytest.raises(ValueError, match="serial"):
        decrypt_certificates(v.CERTIFICATES_APIV3_KEY.encode(), forged)


# --------------------------------------------------------------------------- RSA-OAEP


def test_rsa_oaep_round_trip_with_the_sdk_key_pair() -> None:
    private_key = load_private_key(v.private_key_pem())
    for pem in (v.PUBLIC_KEY, v.CERT_D7CE59D1F522D701):
        public_key, _ = load_public_key(pem)
        ciphertext = rsa_oaep_encrypt(public_key, "hello world")
        # Decrypted independently with the primitive (OAEP, MGF1-SHA1, SHA-1, no label), as the
        # SDK's TestOAEPCrypto does with rsa.DecryptOAEP(sha1.New(), …).
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        assert private_key.decrypt(base64.b64decode(ciphertext), oaep) == b"hello world"
        assert rsa_oaep_decrypt(private_key, ciphertext) == "hello world"
        assert rsa_oaep_encrypt(public_key, "hello world") != ciphertext  # randomised
    name = "深圳市优选生活平台科技有限公司"
    public_key, _ = load_public_key(v.PUBLIC_KEY)
    assert rsa_oaep_decrypt(private_key, rsa_oaep_encrypt(public_key, name)) == name
