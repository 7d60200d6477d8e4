//! `AEAD_AES_256_CBC_HMAC_SHA_256`: SQL Server's cell encryption.
//!
//! From the 32-byte column encryption key three sub-keys are derived, each
//! `HMAC-SHA256(CEK, UTF-16LE(salt))` with the salts in [`ENC_KEY_SALT`], [`MAC_KEY_SALT`] and
//! [`IV_KEY_SALT`]. A cell is
//!
//! ```text
//! 0x01 ‖ MAC[32] ‖ IV[16] ‖ AES-256-CBC(enc_key, IV, PKCS7(plaintext))
//! MAC = HMAC-SHA256(mac_key, 0x01 ‖ IV ‖ ciphertext ‖ 0x01)
//! ```
//!
//! where the IV is random ([`EncryptionType::Randomized`]) or the first 16 bytes of
//! `HMAC-SHA256(iv_key, plaintext)` ([`EncryptionType::Deterministic`]). The trailing `0x01` of
//! the MAC input is the length of the version field.

use aes::Aes256;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit, block_padding::Pkcs7};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::value::{SqlType, SqlValue};
use crate::{Cek, Error};

type HmacSha256 = Hmac<Sha256>;

/// Salt of the encryption sub-key (hashed as UTF-16LE).
pub const ENC_KEY_SALT: &str = "Microsoft SQL Server cell encryption key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
/// Salt of the MAC sub-key (hashed as UTF-16LE).
pub const MAC_KEY_SALT: &str = "Microsoft SQL Server cell MAC key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";
/// Salt of the IV sub-key (hashed as UTF-16LE).
pub const IV_KEY_SALT: &str = "Microsoft SQL Server cell IV key with encryption algorithm:AEAD_AES_256_CBC_HMAC_SHA256 and key length:256";

/// The only cell format version SQL Server writes.
const VERSION: u8 = 0x01;
/// Length of the version field, the last byte of the MAC input.
const VERSION_LEN: u8 = 0x01;
const MAC_LEN: usize = 32;
const IV_LEN: usize = 16;
const BLOCK_LEN: usize = 16;

/// The smallest possible cell: version, MAC, IV and one block of ciphertext.
pub const MIN_CELL_LEN: usize = 1 + MAC_LEN + IV_LEN + BLOCK_LEN;

/// How the IV of a cell is chosen, as declared for the column (`ENCRYPTION_TYPE = …`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncryptionType {
    /// IV derived from the plaintext: equal plaintexts give equal cells, so the column can be
    /// compared for equality, joined and indexed — and equal values are visible as equal.
    Deterministic,
    /// Random IV: equal plaintexts give different cells.
    Randomized,
}

impl EncryptionType {
    /// From `sys.columns.encryption_type` (1 = deterministic, 2 = randomized).
    pub fn from_sql_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Deterministic),
            2 => Some(Self::Randomized),
            _ => None,
        }
    }

    /// The `sys.columns.encryption_type` code.
    pub fn sql_code(self) -> u8 {
        match self {
            Self::Deterministic => 1,
            Self::Randomized => 2,
        }
    }

    /// The keyword used in `ENCRYPTED WITH (ENCRYPTION_TYPE = …)`.
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Deterministic => "DETERMINISTIC",
            Self::Randomized => "RANDOMIZED",
        }
    }
}

/// Encrypts and decrypts the cells of one column under one column encryption key.
///
/// Built once per key (it derives the three sub-keys and the AES key schedule) and then used for
/// any number of cells; `Sync`, so one instance can serve many threads. Derived keys are wiped
/// when it is dropped, and `Debug` omits them.
pub struct CellCipher {
    aes: Aes256,
    mac_key: Zeroizing<[u8; 32]>,
    iv_key: Zeroizing<[u8; 32]>,
}

impl CellCipher {
    /// Derive the sub-keys of `cek`.
    pub fn new(cek: &Cek) -> Self {
        let enc_key = derive(cek, ENC_KEY_SALT);
        Self {
            aes: Aes256::new(&(*enc_key).into()),
            mac_key: derive(cek, MAC_KEY_SALT),
            iv_key: derive(cek, IV_KEY_SALT),
        }
    }

    /// The length of the cell that encrypts `plaintext_len` bytes.
    pub fn cell_len(plaintext_len: usize) -> usize {
        1 + MAC_LEN + IV_LEN + (plaintext_len / BLOCK_LEN + 1) * BLOCK_LEN
    }

    /// Encrypt already-serialised plaintext into a cell.
    ///
    /// Fails only if the random number generator fails (randomized encryption).
    pub fn encrypt(&self, plaintext: &[u8], encryption: EncryptionType) -> Result<Vec<u8>, Error> {
        let mut iv = [0u8; IV_LEN];
        match encryption {
            EncryptionType::Deterministic => {
                let tag = hmac(&self.iv_key, &[plaintext]);
                iv.copy_from_slice(&tag[..IV_LEN]);
            }
            EncryptionType::Randomized => OsRng.try_fill_bytes(&mut iv).map_err(Error::random)?,
        }
        Ok(self.encrypt_with_iv(plaintext, &iv))
    }

    /// Encrypt with a caller-chosen IV. Reusing an IV for different plaintexts under one key
    /// leaks their common prefix; only the test vectors need this.
    pub(crate) fn encrypt_with_iv(&self, plaintext: &[u8], iv: &[u8; IV_LEN]) -> Vec<u8> {
        let ciphertext = cbc::Encryptor::<Aes256>::inner_iv_init(self.aes.clone(), iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let tag = self.mac(iv, &ciphertext);
        let mut cell = Vec::with_capacity(1 + MAC_LEN + IV_LEN + ciphertext.len());
        cell.push(VERSION);
        cell.extend_from_slice(&tag);
        cell.extend_from_slice(iv);
        cell.extend_from_slice(&ciphertext);
        cell
    }

    /// Decrypt a cell into its serialised plaintext.
    ///
    /// The MAC is checked, in constant time, before anything is decrypted. Errors:
    /// [`Error::Truncated`] below [`MIN_CELL_LEN`] bytes, [`Error::UnsupportedVersion`] for a
    /// first byte other than `0x01`, [`Error::Mac`] for a wrong key or an altered MAC, IV or
    /// ciphertext, and [`Error::Malformed`] / [`Error::Padding`] for a cell that authenticates
    /// but was built wrongly.
    pub fn decrypt(&self, cell: &[u8]) -> Result<Vec<u8>, Error> {
        if cell.len() < MIN_CELL_LEN {
            return Err(Error::Truncated {
                what: "cell",
                need: MIN_CELL_LEN,
                got: cell.len(),
            });
        }
        let Some((&version, rest)) = cell.split_first() else {
            return Err(Error::Internal("cell length checked above".into()));
        };
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                what: "cell",
                got: version,
            });
        }
        let (tag, rest) = rest
            .split_at_checked(MAC_LEN)
            .ok_or_else(|| Error::Internal("cell length checked above".into()))?;
        let (iv, ciphertext) = rest
            .split_at_checked(IV_LEN)
            .ok_or_else(|| Error::Internal("cell length checked above".into()))?;

        let expected = self.mac(iv, ciphertext);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(Error::Mac);
        }
        if !ciphertext.len().is_multiple_of(BLOCK_LEN) {
            return Err(Error::malformed(
                "cell",
                format!(
                    "ciphertext is {} bytes, not a multiple of the AES block size",
                    ciphertext.len()
                ),
            ));
        }
        let iv: &[u8; IV_LEN] = iv
            .try_into()
            .map_err(|_| Error::Internal("IV length fixed above".into()))?;
        cbc::Decryptor::<Aes256>::inner_iv_init(self.aes.clone(), iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .map_err(|_| Error::Padding)
    }

    /// Serialise `value` as SQL Server does for a column of type `ty`, then encrypt it.
    pub fn encrypt_value(
        &self,
        value: &SqlValue,
        ty: &SqlType,
        encryption: EncryptionType,
    ) -> Result<Vec<u8>, Error> {
        let plaintext = Zeroizing::new(value.encode(ty)?);
        self.encrypt(&plaintext, encryption)
    }

    /// Decrypt a cell of a column of type `ty` and deserialise its value.
    pub fn decrypt_value(&self, cell: &[u8], ty: &SqlType) -> Result<SqlValue, Error> {
        let plaintext = Zeroizing::new(self.decrypt(cell)?);
        SqlValue::decode(&plaintext, ty)
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; MAC_LEN] {
        hmac(&self.mac_key, &[&[VERSION], iv, ciphertext, &[VERSION_LEN]])
    }
}

impl std::fmt::Debug for CellCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellCipher(AEAD_AES_256_CBC_HMAC_SHA_256, <keys redacted>)")
    }
}

/// `HMAC-SHA256(cek, UTF-16LE(salt))`.
fn derive(cek: &Cek, salt: &str) -> Zeroizing<[u8; 32]> {
    let salt = Zeroizing::new(utf16le(salt));
    Zeroizing::new(hmac(cek.expose_secret(), &[&salt]))
}

/// `HMAC-SHA256(key, parts…)` for a 32-byte key.
///
/// RFC 2104 zero-pads keys shorter than the 64-byte block, so padding here and using the
/// infallible block-sized constructor computes exactly HMAC(key, …).
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new((&*block).into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The three derived sub-keys, for the key-derivation vectors.
#[cfg(test)]
pub(crate) fn derived_keys(cek: &Cek) -> [[u8; 32]; 3] {
    [
        *derive(cek, ENC_KEY_SALT),
        *derive(cek, MAC_KEY_SALT),
        *derive(cek, IV_KEY_SALT),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{self, Lcg, hex_field};
    use rstest::rstest;

    fn cipher(key_hex: &str) -> CellCipher {
        CellCipher::new(&Cek::from_bytes(&hex::decode(key_hex).unwrap()).unwrap())
    }

    #[test]
    fn key_derivation_vectors() {
        let vectors = testdata::vectors();
        let list = vectors["key_derivation"]["vectors"].as_array().unwrap();
        let salts = &vectors["key_derivation"]["salts"];
        assert_eq!(salts["enc"], ENC_KEY_SALT);
        assert_eq!(salts["mac"], MAC_KEY_SALT);
        assert_eq!(salts["iv"], IV_KEY_SALT);
        let mut checked = 0;
        for v in list {
            let id = v["id"].as_str().unwrap();
            let cek = Cek::from_bytes(&hex_field(v, "root_key")).unwrap();
            let [enc, mac, iv] = derived_keys(&cek);
            assert_eq!(enc.to_vec(), hex_field(v, "enc_key"), "{id}: enc_key");
            assert_eq!(mac.to_vec(), hex_field(v, "mac_key"), "{id}: mac_key");
            assert_eq!(iv.to_vec(), hex_field(v, "iv_key"), "{id}: iv_key");
            checked += 1;
        }
        assert!(
            checked >= 3,
            "expected at least 3 key-derivation vectors, got {checked}"
        );
    }

    /// Vectors in `cell_vectors` that this test does not check, each with its reason.
    /// Empty: every cell vector is checked.
    const CELL_SKIP: &[(&str, &str)] = &[];

    #[test]
    fn cell_vectors() {
        let vectors = testdata::vectors();
        let list = vectors["cell_vectors"].as_array().unwrap();
        let mut checked = 0;
        for v in list {
            let id = v["id"].as_str().unwrap();
            if CELL_SKIP.iter().any(|(skip, _)| *skip == id) {
                continue;
            }
            let cipher = cipher(v["root_key"].as_str().unwrap());
            let plaintext = hex_field(v, "plaintext");
            let expected = hex_field(v, "ciphertext");
            let direction = v["direction"].as_str().unwrap();

            // Decrypt: every vector.
            assert_eq!(
                cipher.decrypt(&expected).unwrap(),
                plaintext,
                "{id}: decrypt"
            );

            // Encrypt: with the stated IV, or deterministically; not for decrypt-only vectors.
            if let Some(iv) = v.get("iv") {
                let iv: [u8; 16] = hex::decode(iv.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                assert_eq!(
                    cipher.encrypt_with_iv(&plaintext, &iv),
                    expected,
                    "{id}: encrypt"
                );
            } else if v["encryption_type"] == "deterministic" {
                let cell = cipher
                    .encrypt(&plaintext, EncryptionType::Deterministic)
                    .unwrap();
                assert_eq!(cell, expected, "{id}: encrypt");
            } else {
                assert_eq!(direction, "decrypt only", "{id}: how to encrypt it?");
            }

            // Parts given separately must sit where the layout says.
            if let Some(mac) = v.get("mac") {
                assert_eq!(
                    expected[1..33],
                    hex::decode(mac.as_str().unwrap()).unwrap()[..],
                    "{id}: mac"
                );
            }
            if let Some(ct) = v.get("aes_cbc_ciphertext") {
                assert_eq!(
                    expected[49..],
                    hex::decode(ct.as_str().unwrap()).unwrap()[..],
                    "{id}: ct"
                );
            }
            if let Some(text) = v.get("plaintext_utf16le") {
                assert_eq!(
                    utf16le(text.as_str().unwrap()),
                    plaintext,
                    "{id}: plaintext text"
                );
            }
            if let Some(text) = v.get("plaintext_ascii") {
                assert_eq!(
                    text.as_str().unwrap().as_bytes(),
                    plaintext,
                    "{id}: plaintext text"
                );
            }
            assert_eq!(
                expected.len(),
                CellCipher::cell_len(plaintext.len()),
                "{id}: length"
            );
            checked += 1;
        }
        assert!(
            checked >= 4,
            "expected at least 4 cell vectors, got {checked}"
        );
        assert_eq!(checked + CELL_SKIP.len(), list.len());
    }

    #[test]
    fn real_sql_server_cell_file_decrypts_to_readme_value() {
        let cell = testdata::read("swisscom/column_value.enc");
        assert_eq!(cell.len(), 81);
        let cek = Cek::from_bytes(&testdata::swisscom_cek()).unwrap();
        let cipher = CellCipher::new(&cek);
        let value = cipher
            .decrypt_value(&cell, &SqlType::NChar { len: 10 })
            .unwrap();
        assert_eq!(value, SqlValue::String("12345     ".into()));
    }

    #[rstest]
    #[case::deterministic(EncryptionType::Deterministic, true)]
    #[case::randomized(EncryptionType::Randomized, false)]
    fn equal_plaintexts_give_equal_cells_only_when_deterministic(
        #[case] encryption: EncryptionType,
        #[case] equal: bool,
    ) {
        let cipher = CellCipher::new(&Cek::generate().unwrap());
        let a = cipher.encrypt(b"same value", encryption).unwrap();
        let b = cipher.encrypt(b"same value", encryption).unwrap();
        assert_eq!(a == b, equal);
        assert_eq!(cipher.decrypt(&a).unwrap(), b"same value");
        assert_eq!(cipher.decrypt(&b).unwrap(), b"same value");
    }

    #[rstest]
    #[case::empty(0)]
    #[case::one(1)]
    #[case::block_minus_one(15)]
    #[case::block(16)]
    #[case::block_plus_one(17)]
    #[case::large(8000)]
    fn plaintext_lengths_round_trip(#[case] len: usize) {
        let cipher = CellCipher::new(&Cek::generate().unwrap());
        let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
        for encryption in [EncryptionType::Deterministic, EncryptionType::Randomized] {
            let cell = cipher.encrypt(&plaintext, encryption).unwrap();
            assert_eq!(cell.len(), CellCipher::cell_len(len));
            assert_eq!(cipher.decrypt(&cell).unwrap(), plaintext);
        }
    }

    fn sample_cell() -> (CellCipher, Vec<u8>) {
        let cipher = cipher("ED6FBC93EECDE0BFC6494FFB2EDB7998B7E94EF71FEDE584741A855238F0155E");
        let cell = cipher
            .encrypt(
                b"a plaintext of 33 bytes, 3 blocks",
                EncryptionType::Randomized,
            )
            .unwrap();
        (cipher, cell)
    }

    #[rstest]
    #[case::version_low_bit(0, 0x01)]
    #[case::version_high_bit(0, 0x80)]
    fn flipped_version_bit_is_unsupported_version(#[case] at: usize, #[case] mask: u8) {
        let (cipher, mut cell) = sample_cell();
        cell[at] ^= mask;
        assert!(matches!(
            cipher.decrypt(&cell),
            Err(Error::UnsupportedVersion { what: "cell", .. })
        ));
    }

    #[rstest]
    #[case::mac_first(1)]
    #[case::mac_last(32)]
    #[case::iv_first(33)]
    #[case::iv_last(48)]
    #[case::ciphertext_first(49)]
    #[case::ciphertext_middle(70)]
    #[case::ciphertext_last(usize::MAX)]
    fn flipped_bit_in_mac_iv_or_ciphertext_is_mac_error(#[case] at: usize) {
        let (cipher, mut cell) = sample_cell();
        let at = at.min(cell.len() - 1);
        for bit in 0..8 {
            let mut tampered = cell.clone();
            tampered[at] ^= 1 << bit;
            assert!(
                matches!(cipher.decrypt(&tampered), Err(Error::Mac)),
                "byte {at} bit {bit}"
            );
        }
        cell[at] ^= 0xff;
        assert!(matches!(cipher.decrypt(&cell), Err(Error::Mac)));
    }

    #[test]
    fn cell_under_another_key_is_mac_error() {
        let (_, cell) = sample_cell();
        let other = CellCipher::new(&Cek::generate().unwrap());
        assert!(matches!(other.decrypt(&cell), Err(Error::Mac)));
    }

    #[rstest]
    #[case::empty(0)]
    #[case::version_only(1)]
    #[case::version_and_mac(33)]
    #[case::no_ciphertext(48)]
    #[case::one_short(64)]
    fn truncated_cells_are_truncated_errors(#[case] len: usize) {
        let (cipher, cell) = sample_cell();
        let err = cipher.decrypt(&cell[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { what: "cell", need: MIN_CELL_LEN, got } if got == len),
            "{err:?}"
        );
    }

    #[test]
    fn ciphertext_cut_at_block_boundary_is_mac_error() {
        let (cipher, cell) = sample_cell();
        assert!(matches!(
            cipher.decrypt(&cell[..cell.len() - 16]),
            Err(Error::Mac)
        ));
        assert!(matches!(
            cipher.decrypt(&cell[..cell.len() - 1]),
            Err(Error::Mac)
        ));
    }

    #[test]
    fn authenticated_cell_with_bad_padding_is_padding_error() {
        // Build a cell whose MAC is right but whose last block does not unpad: only a broken
        // producer holding the key can do this.
        let cipher = cipher("0000000000000000000000000000000000000000000000000000000000000000");
        let iv = [0x11; 16];
        let block = cbc::Encryptor::<Aes256>::inner_iv_init(cipher.aes.clone(), (&iv).into())
            .encrypt_padded_vec_mut::<aes::cipher::block_padding::NoPadding>(&[0u8; 16]);
        let tag = cipher.mac(&iv, &block);
        let cell = [&[VERSION][..], &tag, &iv, &block].concat();
        assert!(matches!(cipher.decrypt(&cell), Err(Error::Padding)));

        // And one whose ciphertext is not whole blocks.
        let odd = [0u8; 20];
        let tag = cipher.mac(&iv, &odd);
        let cell = [&[VERSION][..], &tag, &iv, &odd].concat();
        assert!(matches!(
            cipher.decrypt(&cell),
            Err(Error::Malformed { what: "cell", .. })
        ));
    }

    #[test]
    fn cipher_can_serve_many_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CellCipher>();
        assert_send_sync::<Cek>();
    }

    #[test]
    fn debug_omits_derived_keys() {
        let cipher = cipher("0000000000000000000000000000000000000000000000000000000000000000");
        let shown = format!("{cipher:?}");
        assert!(shown.contains("redacted"));
        // The zero key's MAC key starts 9d1f22.
        assert!(!shown.contains("9d") && !shown.contains("157"), "{shown}");
    }

    #[rstest]
    #[case::deterministic(1, Some(EncryptionType::Deterministic))]
    #[case::randomized(2, Some(EncryptionType::Randomized))]
    #[case::plaintext(0, None)]
    #[case::unknown(3, None)]
    fn encryption_type_codes(#[case] code: u8, #[case] expected: Option<EncryptionType>) {
        assert_eq!(EncryptionType::from_sql_code(code), expected);
        if let Some(ty) = expected {
            assert_eq!(ty.sql_code(), code);
        }
    }

    /// Deterministic pseudo-random mutations of valid cells: never a panic, never a success
    /// unless the bytes are unchanged.
    #[test]
    fn fuzz_mutated_cells_never_panic() {
        let cipher = CellCipher::new(&Cek::from_bytes(&[0x42; 32]).unwrap());
        let seeds: Vec<Vec<u8>> = [0usize, 1, 15, 16, 17, 40]
            .iter()
            .map(|&n| {
                let pt: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                cipher.encrypt(&pt, EncryptionType::Deterministic).unwrap()
            })
            .collect();
        let mut rng = Lcg::new(0x00c0_1e9c);
        let mut cases = 0;
        for round in 0..6000 {
            let seed = &seeds[round % seeds.len()];
            let mutated = rng.mutate(seed);
            let result = cipher.decrypt(&mutated);
            if mutated != *seed {
                assert!(result.is_err(), "mutation {round} decrypted");
            }
            cases += 1;
        }
        // Random bytes of random lengths too.
        for _ in 0..2000 {
            let len = rng.below(200);
            let bytes = rng.bytes(len);
            assert!(cipher.decrypt(&bytes).is_err());
            cases += 1;
        }
        assert_eq!(cases, 8000);
    }
}
