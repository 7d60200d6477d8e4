#!/usr/bin/env python3
"""The independent Always Encrypted peer (crates/colenc/tests/peer/ae_peer.py, written from the
published algorithm with `cryptography`) applied to a SQLite database Cloister wrote.

Request on stdin (JSON), response on stdout (JSON):

  {"op": "read", "db": path, "cmk_pem": path, "table": t, "column": c, "type": {...},
   "order_by": column}
      -> {"values": [text...]}: the CEK named by the column's metadata, unwrapped with the CMK,
         decrypts every cell.
  {"op": "write", "db": path, "cmk_pem": path, "table": t, "column": c, "type": {...},
   "key_column": k, "values": {"<key>": text, ...}}
      -> {"written": n}: those rows' cells replaced by cells this peer encrypts (the column's
         CEK and encryption type), in one transaction.
"""

import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "colenc", "tests", "peer"))
import ae_peer as ae  # noqa: E402


def column_key(db, key, table, column):
    cek_name, encryption_type = db.execute(
        "SELECT cek_name, encryption_type FROM cloister_encrypted_columns "
        "WHERE table_name = ? AND column_name = ?",
        (table, column),
    ).fetchone()
    (value,) = db.execute(
        "SELECT encrypted_value FROM cloister_column_encryption_keys WHERE name = ?",
        (cek_name,),
    ).fetchone()
    cek, _ = ae.unwrap_cek(bytes(value), key)
    return cek, ("deterministic" if encryption_type == 1 else "randomized")


def main():
    req = json.load(sys.stdin)
    db = sqlite3.connect(req["db"])
    key = ae.load_private_key(req["cmk_pem"])
    cek, encryption = column_key(db, key, req["table"], req["column"])
    table, column = f'"{req["table"]}"', f'"{req["column"]}"'
    if req["op"] == "read":
        rows = db.execute(f'SELECT {column} FROM {table} ORDER BY "{req["order_by"]}"').fetchall()
        values = [ae.decode(req["type"], ae.decrypt_cell(cek, bytes(r[0]))) for r in rows]
        print(json.dumps({"values": values}))
    elif req["op"] == "write":
        with db:
            for k, text in req["values"].items():
                cell = ae.encrypt_cell(cek, ae.encode(req["type"], text), encryption)
                db.execute(
                    f'UPDATE {table} SET {column} = ? WHERE "{req["key_column"]}" = ?',
                    (cell, int(k)),
                )
        print(json.dumps({"written": len(req["values"])}))
    else:
        raise SystemExit(f"unknown op {req['op']}")


if __name__ == "__main__":
    main()
