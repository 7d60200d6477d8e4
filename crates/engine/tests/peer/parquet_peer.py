#!/usr/bin/env python3
"""pyarrow peer for Cloister's Parquet key-management-tools (KMT) interop tests.

    parquet_peer.py check           exit 0 if pyarrow and cryptography import
    parquet_peer.py write OUT       write the peer table to OUT, encrypted with KMT
    parquet_peer.py read IN [IN…]   decrypt the files, print their rows as JSON (sorted by id)

The configuration comes as JSON on stdin (keys never on the command line):

    {"master_keys": {"kf": "<hex>", "kc1": "<hex>"},
     "footer_key": "kf", "column_keys": {"kc1": ["ssn"]},
     "double_wrapping": true, "plaintext_footer": false}

The KMS client wraps like parquet-mr's sample InMemoryKMS and Cloister's KMT provider:
AES-GCM under the master key, random 12-byte nonce, AAD = the master key id (UTF-8),
result base64(nonce ‖ ciphertext ‖ tag).
"""

import base64
import json
import os
import sys


def kms_factory(master_keys):
    import pyarrow.parquet.encryption as pe
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    class AesGcmKms(pe.KmsClient):
        def __init__(self):
            pe.KmsClient.__init__(self)

        def wrap_key(self, key_bytes, master_key_identifier):
            nonce = os.urandom(12)
            master = master_keys[master_key_identifier]
            sealed = AESGCM(master).encrypt(nonce, key_bytes, master_key_identifier.encode())
            return base64.b64encode(nonce + sealed)

        def unwrap_key(self, wrapped_key, master_key_identifier):
            raw = base64.b64decode(wrapped_key)
            master = master_keys[master_key_identifier]
            return AESGCM(master).decrypt(raw[:12], raw[12:], master_key_identifier.encode())

    return lambda _kms_connection_config: AesGcmKms()


def peer_table():
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": ["CANARY-py-alice", "CANARY-py-bob", "CANARY-py-carol"],
            "ssn": ["CANARY-111-11-1111", "CANARY-222-22-2222", "CANARY-333-33-3333"],
            "salary": pa.array([1000.5, 2000.25, 3000.0], pa.float64()),
        }
    )


def main(argv):
    if len(argv) < 2 or argv[1] not in ("check", "write", "read"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "check":
        import pyarrow.parquet.encryption  # noqa: F401
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
        return 0

    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyarrow.parquet.encryption as pe

    config = json.load(sys.stdin)
    master_keys = {k: bytes.fromhex(v) for k, v in config["master_keys"].items()}
    crypto = pe.CryptoFactory(kms_factory(master_keys))
    connection = pe.KmsConnectionConfig()

    if argv[1] == "write":
        encryption = pe.EncryptionConfiguration(
            footer_key=config["footer_key"],
            column_keys=config.get("column_keys", {}),
            encryption_algorithm="AES_GCM_V1",
            double_wrapping=config.get("double_wrapping", True),
            plaintext_footer=config.get("plaintext_footer", False),
        )
        properties = crypto.file_encryption_properties(connection, encryption)
        pq.write_table(peer_table(), argv[2], encryption_properties=properties)
        return 0

    decryption = crypto.file_decryption_properties(connection, pe.DecryptionConfiguration())
    tables = [pq.read_table(path, decryption_properties=decryption) for path in argv[2:]]
    table = pa.concat_tables(tables).sort_by("id")
    json.dump(table.to_pydict(), sys.stdout, default=str, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
