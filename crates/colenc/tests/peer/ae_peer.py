#!/usr/bin/env python3
"""An independent SQL Server Always Encrypted peer, for cloister-colenc's interop tests.

Written from the published algorithm (Microsoft's "Always Encrypted cryptography" page and the
drivers' normalisation rules), with Python's `cryptography` package. It shares no code with the
Rust crate.

Protocol: a JSON list of requests on stdin, a JSON list of responses (same order) on stdout.
Each response is {"ok": {...}} or {"error": "<kind>: <detail>"}.

  {"op": "encrypt", "cek": hex, "encryption": "deterministic"|"randomized",
   "type": {"name": ..., ...}, "value": text}                          -> {"cell": hex}
  {"op": "decrypt", "cek": hex, "type": {...}, "cell": hex}           -> {"value": text}
  {"op": "encrypt_raw", "cek": hex, "encryption": ..., "plaintext": hex} -> {"cell": hex}
  {"op": "decrypt_raw", "cek": hex, "cell": hex}                      -> {"plaintext": hex}
  {"op": "wrap", "cek": hex, "cmk_pem": path, "key_path": text}       -> {"encrypted_value": hex}
  {"op": "unwrap", "encrypted_value": hex, "cmk_pem": path}           -> {"cek": hex, "key_path": text}

Values are text: integers in decimal, decimals and money as decimal literals (money with four
places), dates "YYYY-MM-DD", times "HH:MM:SS.fffffff", datetime2 "<date> <time>",
datetimeoffset "<local date> <local time> +HH:MM", uniqueidentifier in its usual form,
varbinary in hex, strings as themselves.
"""

import datetime
import hashlib
import hmac
import json
import os
import struct
import sys
import uuid
import decimal
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA256"

# decimal(38, s) needs 38 digits; Python's default context rounds at 28.
decimal.getcontext().prec = 80


class PeerError(Exception):
    pass


# ----- cells -----------------------------------------------------------------------------


def sub_key(cek, purpose):
    salt = (
        f"Microsoft SQL Server cell {purpose} key with encryption algorithm:"
        f"{ALGORITHM} and key length:256"
    )
    return hmac.new(cek, salt.encode("utf-16-le"), hashlib.sha256).digest()


def keys(cek):
    if len(cek) != 32:
        raise PeerError("key: CEK must be 32 bytes")
    return sub_key(cek, "encryption"), sub_key(cek, "MAC"), sub_key(cek, "IV")


def encrypt_cell(cek, plaintext, encryption):
    enc_key, mac_key, iv_key = keys(cek)
    if encryption == "deterministic":
        iv = hmac.new(iv_key, plaintext, hashlib.sha256).digest()[:16]
    elif encryption == "randomized":
        iv = os.urandom(16)
    else:
        raise PeerError(f"request: unknown encryption {encryption}")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, b"\x01" + iv + ciphertext + b"\x01", hashlib.sha256).digest()
    return b"\x01" + mac + iv + ciphertext


def decrypt_cell(cek, cell):
    enc_key, mac_key, _ = keys(cek)
    if len(cell) < 65:
        raise PeerError("truncated: a cell has at least 65 bytes")
    if cell[0] != 1:
        raise PeerError(f"version: {cell[0]}")
    mac, iv, ciphertext = cell[1:33], cell[33:49], cell[49:]
    expected = hmac.new(mac_key, b"\x01" + iv + ciphertext + b"\x01", hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise PeerError("mac: authentication tag does not verify")
    if len(ciphertext) % 16:
        raise PeerError("malformed: ciphertext is not whole blocks")
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise PeerError("padding: invalid PKCS#7 padding") from exc


# ----- wrapped CEKs ----------------------------------------------------------------------


def load_private_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


OAEP_SHA1 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
)


def wrap_cek(cek, private_key, key_path):
    path = key_path.lower().encode("utf-16-le")
    ciphertext = private_key.public_key().encrypt(cek, OAEP_SHA1)
    body = b"\x01" + struct.pack("<HH", len(path), len(ciphertext)) + path + ciphertext
    digest = hashlib.sha256(body).digest()
    signature = private_key.sign(digest, asym_padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return body + signature


def unwrap_cek(value, private_key):
    if len(value) < 5 or value[0] != 1:
        raise PeerError("malformed: bad header")
    path_len, ct_len = struct.unpack_from("<HH", value, 1)
    size = private_key.key_size // 8
    body_end = 5 + path_len + ct_len
    if ct_len != size or len(value) - body_end != size:
        raise PeerError("size: ciphertext or signature length is not the modulus size")
    body, signature = value[:body_end], value[body_end:]
    try:
        private_key.public_key().verify(
            signature,
            hashlib.sha256(body).digest(),
            asym_padding.PKCS1v15(),
            Prehashed(hashes.SHA256()),
        )
    except Exception as exc:  # cryptography raises InvalidSignature
        raise PeerError("signature: does not verify") from exc
    key_path = value[5 : 5 + path_len].decode("utf-16-le")
    cek = private_key.decrypt(value[5 + path_len : body_end], OAEP_SHA1)
    return cek, key_path


# ----- plaintext serialisation (normalisation rule version 1) ----------------------------

INTEGER_RANGES = {
    "bit": (0, 1),
    "tinyint": (0, 255),
    "smallint": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
TICKS_PER_DAY = 864_000_000_000


def parse_time(text):
    hms, _, frac = text.partition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    frac = (frac + "0000000")[:7]
    return ((h * 60 + m) * 60 + s) * 10_000_000 + int(frac)


def show_time(ticks):
    secs, frac = divmod(ticks, 10_000_000)
    return f"{secs // 3600:02}:{secs // 60 % 60:02}:{secs % 60:02}.{frac:07}"


def parse_date(text):
    return datetime.date.fromisoformat(text).toordinal() - 1


def show_date(days):
    return datetime.date.fromordinal(days + 1).isoformat()


def truncate(ticks, scale):
    unit = 10 ** (7 - scale)
    return ticks // unit * unit


def encode(ty, text):
    name = ty["name"]
    if name in INTEGER_RANGES:
        v = int(text)
        lo, hi = INTEGER_RANGES[name]
        if not lo <= v <= hi:
            raise PeerError(f"range: {name}")
        return struct.pack("<q", v)
    if name == "real":
        return struct.pack("<f", float(text))
    if name == "float":
        return struct.pack("<d", float(text))
    if name in ("decimal", "numeric"):
        scale = ty["scale"]
        unscaled = int(Decimal(text).scaleb(scale).to_integral_exact())
        return bytes([1 if unscaled >= 0 else 0]) + abs(unscaled).to_bytes(16, "little")
    if name in ("money", "smallmoney"):
        v = int(Decimal(text).scaleb(4).to_integral_exact())
        return struct.pack("<iI", v >> 32, v & 0xFFFFFFFF)
    if name == "date":
        return parse_date(text).to_bytes(3, "little")
    if name == "time":
        return truncate(parse_time(text), ty["scale"]).to_bytes(5, "little")
    if name == "datetime2":
        d, t = text.split(" ")
        return truncate(parse_time(t), ty["scale"]).to_bytes(5, "little") + parse_date(
            d
        ).to_bytes(3, "little")
    if name == "datetimeoffset":
        d, t, off = text.split(" ")
        sign = -1 if off[0] == "-" else 1
        minutes = sign * (int(off[1:3]) * 60 + int(off[4:6]))
        local = parse_date(d) * TICKS_PER_DAY + parse_time(t)
        days, ticks = divmod(local - minutes * 60 * 10_000_000, TICKS_PER_DAY)
        return (
            truncate(ticks, ty["scale"]).to_bytes(5, "little")
            + days.to_bytes(3, "little")
            + struct.pack("<h", minutes)
        )
    if name == "uniqueidentifier":
        return uuid.UUID(text).bytes_le
    if name in ("nchar", "nvarchar"):
        return text.encode("utf-16-le")
    if name in ("char", "varchar"):
        return text.encode("utf-8")
    if name in ("binary", "varbinary"):
        return bytes.fromhex(text)
    raise PeerError(f"request: unknown type {name}")


def decode(ty, data):
    name = ty["name"]
    if name in INTEGER_RANGES:
        if len(data) != 8:
            raise PeerError(f"decode: {name} needs 8 bytes")
        return str(struct.unpack("<q", data)[0])
    if name == "real":
        return repr(struct.unpack("<f", data)[0])
    if name == "float":
        return repr(struct.unpack("<d", data)[0])
    if name in ("decimal", "numeric"):
        sign, magnitude = data[0], int.from_bytes(data[1:], "little")
        value = Decimal(magnitude if sign == 1 else -magnitude).scaleb(-ty["scale"])
        return f"{value:.{ty['scale']}f}"
    if name in ("money", "smallmoney"):
        high, low = struct.unpack("<iI", data)
        return f"{Decimal((high << 32) | low).scaleb(-4):.4f}"
    if name == "date":
        return show_date(int.from_bytes(data, "little"))
    if name == "time":
        return show_time(int.from_bytes(data, "little"))
    if name == "datetime2":
        ticks, days = int.from_bytes(data[:5], "little"), int.from_bytes(data[5:8], "little")
        return f"{show_date(days)} {show_time(ticks)}"
    if name == "datetimeoffset":
        ticks, days = int.from_bytes(data[:5], "little"), int.from_bytes(data[5:8], "little")
        (minutes,) = struct.unpack("<h", data[8:10])
        local = days * TICKS_PER_DAY + ticks + minutes * 60 * 10_000_000
        days, ticks = divmod(local, TICKS_PER_DAY)
        sign = "-" if minutes < 0 else "+"
        return f"{show_date(days)} {show_time(ticks)} {sign}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
    if name == "uniqueidentifier":
        return str(uuid.UUID(bytes_le=bytes(data)))
    if name in ("nchar", "nvarchar"):
        return data.decode("utf-16-le")
    if name in ("char", "varchar"):
        return data.decode("utf-8")
    if name in ("binary", "varbinary"):
        return data.hex()
    raise PeerError(f"request: unknown type {name}")


# ----- driver ----------------------------------------------------------------------------


def handle(req):
    op = req["op"]
    if op == "encrypt":
        plaintext = encode(req["type"], req["value"])
        return {"cell": encrypt_cell(bytes.fromhex(req["cek"]), plaintext, req["encryption"]).hex()}
    if op == "decrypt":
        plaintext = decrypt_cell(bytes.fromhex(req["cek"]), bytes.fromhex(req["cell"]))
        return {"value": decode(req["type"], plaintext)}
    if op == "encrypt_raw":
        plaintext = bytes.fromhex(req["plaintext"])
        return {"cell": encrypt_cell(bytes.fromhex(req["cek"]), plaintext, req["encryption"]).hex()}
    if op == "decrypt_raw":
        return {"plaintext": decrypt_cell(bytes.fromhex(req["cek"]), bytes.fromhex(req["cell"])).hex()}
    if op == "wrap":
        key = load_private_key(req["cmk_pem"])
        return {"encrypted_value": wrap_cek(bytes.fromhex(req["cek"]), key, req["key_path"]).hex()}
    if op == "unwrap":
        key = load_private_key(req["cmk_pem"])
        cek, key_path = unwrap_cek(bytes.fromhex(req["encrypted_value"]), key)
        return {"cek": cek.hex(), "key_path": key_path}
    raise PeerError(f"request: unknown op {op}")


def main():
    responses = []
    for req in json.load(sys.stdin):
        try:
            responses.append({"ok": handle(req)})
        except PeerError as exc:
            responses.append({"error": str(exc)})
    json.dump(responses, sys.stdout)


if __name__ == "__main__":
    main()
