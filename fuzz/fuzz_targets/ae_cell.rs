#![no_main]
//! Always Encrypted cells, wrapped CEKs and plaintext serialisations from untrusted bytes:
//! every parser must return an error, never panic.
//!
//! The first byte picks the SQL type a decrypted plaintext is decoded as; the rest is tried as
//! a cell (under a fixed CEK, and — so that fuzzing reaches past the MAC — re-encrypted and
//! decrypted again), as a wrapped CEK, and as a plaintext of that type.
use cloister_colenc::{Cek, CellCipher, CodePage, EncryptionType, SqlType, SqlValue, WrappedCek};
use libfuzzer_sys::fuzz_target;

const TYPES: &[SqlType] = &[
    SqlType::Bit,
    SqlType::TinyInt,
    SqlType::SmallInt,
    SqlType::Int,
    SqlType::BigInt,
    SqlType::Real,
    SqlType::Float,
    SqlType::Decimal {
        precision: 38,
        scale: 10,
    },
    SqlType::Decimal {
        precision: 5,
        scale: 2,
    },
    SqlType::Money,
    SqlType::SmallMoney,
    SqlType::Date,
    SqlType::Time { scale: 7 },
    SqlType::DateTime2 { scale: 3 },
    SqlType::DateTimeOffset { scale: 7 },
    SqlType::DateTime,
    SqlType::SmallDateTime,
    SqlType::Char {
        len: 10,
        code_page: CodePage::Ascii,
    },
    SqlType::VarChar {
        max_len: None,
        code_page: CodePage::Utf8,
    },
    SqlType::NChar { len: 10 },
    SqlType::NVarChar {
        max_len: Some(4000),
    },
    SqlType::Binary { len: 16 },
    SqlType::VarBinary { max_len: None },
    SqlType::UniqueIdentifier,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let ty = &TYPES[usize::from(selector) % TYPES.len()];
    let Ok(cek) = Cek::from_bytes(&[0x5a; 32]) else {
        return;
    };
    let cipher = CellCipher::new(&cek);

    // As a cell.
    let _ = cipher.decrypt(rest);
    let _ = cipher.decrypt_value(rest, ty);

    // As a plaintext: decode, and whatever decodes must encode and round-trip.
    if let Ok(value) = SqlValue::decode(rest, ty) {
        if let Ok(cell) = cipher.encrypt_value(&value, ty, EncryptionType::Deterministic) {
            let again = cipher.decrypt_value(&cell, ty);
            assert!(
                again.is_ok(),
                "re-encrypted value does not decrypt: {again:?}"
            );
        }
    }
    // Authenticated garbage reaches the padding and the decoders.
    if let Ok(cell) = cipher.encrypt(rest, EncryptionType::Randomized) {
        let _ = cipher.decrypt_value(&cell, ty);
    }

    // As a wrapped CEK.
    if let Ok(wrapped) = WrappedCek::parse(rest) {
        let _ = wrapped.key_path();
        let _ = (wrapped.ciphertext().len(), wrapped.signature().len());
    }
});
