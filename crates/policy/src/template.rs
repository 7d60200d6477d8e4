//! Placeholders and host arguments in `command`, `args`, `env` and file contents.
//!
//! - `$$cloister:NAME$$` is replaced by the secret `NAME` in its default form;
//!   `$$cloister:NAME:FORMAT$$` in the given [`Format`]. Names are `[A-Za-z0-9_-]+`.
//! - `@@N` (N decimal, at most 4 digits) is replaced by the host's argument N — only in `args`,
//!   where the policy author put it on purpose. Elsewhere it is a validation error.
//! - Everything else is literal; there is no escaping and nothing is ever re-scanned, so a host
//!   argument that contains `$$cloister:…$$` stays literal text and cannot pull a secret in.
//!
//! Default forms: text secrets (`ascii`, imported values) as they are; keys (and `cmk`
//! secrets) as PKCS#8 PEM; certificates as PEM. Binary secrets have no default form: name
//! `hex` or `base64`. Neither have `cek` secrets: `hex` / `base64` give the wrapped
//! `encrypted_value`, `key` the column encryption key itself (hex).

use crate::Error;
use base64::Engine as _;
use pkcs8::der::pem::{self, LineEnding};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::fmt;
use zeroize::Zeroizing;

const PREFIX: &str = "$$cloister:";
const SUFFIX: &str = "$$";

/// How a secret is written into a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Lower-case hex of the bytes (of the DER for keys and certificates).
    Hex,
    /// Standard base64 with padding of the same bytes.
    Base64,
    /// PEM: a private key as PKCS#8 `PRIVATE KEY`, a certificate as `CERTIFICATE`.
    Pem,
    /// The certificate, PEM (x509 and x509-ca secrets).
    Crt,
    /// The certificate followed by its issuers up to the root CA, PEM.
    Chain,
    /// The private key, PKCS#8 PEM (private-key, cmk, x509 and x509-ca secrets); for a `cek`
    /// secret the column encryption key itself, lower-case hex of its 32 bytes.
    Key,
}

impl Format {
    /// Parse a format name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "hex" => Format::Hex,
            "base64" => Format::Base64,
            "pem" => Format::Pem,
            "crt" => Format::Crt,
            "chain" => Format::Chain,
            "key" => Format::Key,
            _ => return None,
        })
    }

    /// The format's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hex => "hex",
            Format::Base64 => "base64",
            Format::Pem => "pem",
            Format::Crt => "crt",
            Format::Chain => "chain",
            Format::Key => "key",
        }
    }
}

/// What a placeholder may become, by the kind of value behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueShape {
    /// Printable text (ascii, imported values): default, hex, base64.
    Text,
    /// Random bytes (binary, aes256): hex, base64 only.
    Bytes,
    /// A private key: default (PEM), pem, key, hex, base64.
    PrivateKey,
    /// A certificate with its key: default (crt), crt, pem, chain, key, hex, base64.
    Certificate,
    /// A column encryption key: hex, base64 (of the wrapped value), key (the key, hex).
    ColumnKey,
    /// Not known until resolution (imported from another session): anything.
    Unknown,
}

impl ValueShape {
    pub fn accepts(self, format: Option<Format>) -> bool {
        use Format::*;
        match self {
            ValueShape::Unknown => true,
            ValueShape::Text => matches!(format, None | Some(Hex | Base64)),
            ValueShape::Bytes => matches!(format, Some(Hex | Base64)),
            ValueShape::PrivateKey => matches!(format, None | Some(Hex | Base64 | Pem | Key)),
            ValueShape::Certificate => true,
            ValueShape::ColumnKey => matches!(format, Some(Hex | Base64 | Key)),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ValueShape::Text => "text",
            ValueShape::Bytes => "binary; use :hex or :base64",
            ValueShape::PrivateKey => "a private key",
            ValueShape::Certificate => "a certificate",
            ValueShape::ColumnKey => {
                "a column encryption key; use :hex or :base64 (wrapped) or :key (the key)"
            }
            ValueShape::Unknown => "imported",
        }
    }
}

/// One piece of a scanned template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Secret {
        offset: usize,
        name: &'a str,
        format: Option<&'a str>,
    },
    HostArg {
        offset: usize,
        index: usize,
    },
}

/// Split a template into literal text, placeholders and `@@N` host arguments.
pub(crate) fn scan(template: &str) -> Result<Vec<Piece<'_>>, Error> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let bytes = template.as_bytes();
    while i < bytes.len() {
        if template[i..].starts_with(PREFIX) {
            let body_start = i + PREFIX.len();
            let Some(len) = template[body_start..].find(SUFFIX) else {
                return Err(Error::PlaceholderSyntax {
                    offset: i,
                    reason: "`$$cloister:` is not closed by `$$`".into(),
                });
            };
            let body = &template[body_start..body_start + len];
            let (name, format) = match body.split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (body, None),
            };
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(Error::PlaceholderSyntax {
                    offset: i,
                    reason: format!("`{body}` is not NAME or NAME:FORMAT"),
                });
            }
            if text_start < i {
                pieces.push(Piece::Text(&template[text_start..i]));
            }
            pieces.push(Piece::Secret {
                offset: i,
                name,
                format,
            });
            i = body_start + len + SUFFIX.len();
            text_start = i;
        } else if template[i..].starts_with("@@") {
            let digits = template[i + 2..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits == 0 {
                i += 2;
                continue;
            }
            let index = if digits <= 4 {
                template[i + 2..i + 2 + digits].parse().ok()
            } else {
                None
            };
            let Some(index) = index else {
                return Err(Error::PlaceholderSyntax {
                    offset: i,
                    reason: "host argument index has more than 4 digits".into(),
                });
            };
            if text_start < i {
                pieces.push(Piece::Text(&template[text_start..i]));
            }
            pieces.push(Piece::HostArg { offset: i, index });
            i += 2 + digits;
            text_start = i;
        } else {
            i += template[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if text_start < template.len() {
        pieces.push(Piece::Text(&template[text_start..]));
    }
    Ok(pieces)
}

/// A secret's value as the CAS holds it, to be written into a template.
///
/// `Debug` shows the kind and sizes, never the bytes.
#[non_exhaustive]
pub enum SecretValue {
    /// Printable text: `ascii` secrets, and imported values.
    Text(SecretString),
    /// Random bytes: `binary` and `aes256` secrets.
    Bytes(SecretBox<[u8]>),
    /// A private key, PKCS#8 DER.
    PrivateKey(SecretBox<[u8]>),
    /// A certificate (DER), its issuers up to the root (DER, nearest first), and its private key
    /// (PKCS#8 DER).
    Certificate {
        /// The certificate.
        der: Vec<u8>,
        /// The issuing CA certificates, nearest first.
        issuers: Vec<Vec<u8>>,
        /// The certificate's private key, PKCS#8 DER.
        key: SecretBox<[u8]>,
    },
    /// An Always Encrypted column encryption key and its `encrypted_value` (wrapped by its
    /// column master key, as SQL Server stores it).
    ColumnKey {
        /// The 32-byte key.
        key: SecretBox<[u8]>,
        /// The wrapped value (not secret without the column master key).
        wrapped: Vec<u8>,
    },
}

impl SecretValue {
    /// Text.
    pub fn text(s: impl Into<String>) -> Self {
        SecretValue::Text(SecretString::from(s.into()))
    }

    /// Bytes.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        SecretValue::Bytes(SecretBox::from(b.into().into_boxed_slice()))
    }

    /// A PKCS#8 DER private key.
    pub fn private_key(pkcs8_der: impl Into<Vec<u8>>) -> Self {
        SecretValue::PrivateKey(SecretBox::from(pkcs8_der.into().into_boxed_slice()))
    }

    fn kind(&self) -> &'static str {
        match self {
            SecretValue::Text(_) => "text",
            SecretValue::Bytes(_) => "binary",
            SecretValue::PrivateKey(_) => "private key",
            SecretValue::Certificate { .. } => "certificate",
            SecretValue::ColumnKey { .. } => "column encryption key",
        }
    }

    /// Write the value in `format` (or its default form).
    fn render(&self, name: &str, format: Option<Format>) -> Result<Zeroizing<String>, Error> {
        let not_applicable = || Error::FormatNotApplicable {
            name: name.to_owned(),
            format: format.map_or("default", Format::as_str),
            kind: self.kind(),
        };
        let pem_of = |label: &str, der: &[u8]| -> Result<Zeroizing<String>, Error> {
            pem::encode_string(label, LineEnding::LF, der)
                .map(Zeroizing::new)
                .map_err(|e| Error::Malformed {
                    what: "secret value",
                    reason: format!("cannot PEM-encode: {e}"),
                })
        };
        let encode = |bytes: &[u8], format: Option<Format>| match format {
            Some(Format::Hex) => Some(Zeroizing::new(hex::encode(bytes))),
            Some(Format::Base64) => Some(Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
            _ => None,
        };
        match self {
            SecretValue::Text(text) => match format {
                None => Ok(Zeroizing::new(text.expose_secret().to_owned())),
                f => encode(text.expose_secret().as_bytes(), f).ok_or_else(not_applicable),
            },
            SecretValue::Bytes(bytes) => {
                encode(bytes.expose_secret(), format).ok_or_else(not_applicable)
            }
            SecretValue::PrivateKey(der) => match format {
                None | Some(Format::Pem | Format::Key) => {
                    pem_of("PRIVATE KEY", der.expose_secret())
                }
                f => encode(der.expose_secret(), f).ok_or_else(not_applicable),
            },
            SecretValue::Certificate { der, issuers, key } => match format {
                None | Some(Format::Crt | Format::Pem) => pem_of("CERTIFICATE", der),
                Some(Format::Chain) => {
                    let mut out = pem_of("CERTIFICATE", der)?;
                    for issuer in issuers {
                        out.push_str(&pem_of("CERTIFICATE", issuer)?);
                    }
                    Ok(out)
                }
                Some(Format::Key) => pem_of("PRIVATE KEY", key.expose_secret()),
                f => encode(der, f).ok_or_else(not_applicable),
            },
            SecretValue::ColumnKey { key, wrapped } => match format {
                Some(Format::Key) => Ok(Zeroizing::new(hex::encode(key.expose_secret()))),
                f => encode(wrapped, f).ok_or_else(not_applicable),
            },
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Text(t) => write!(f, "Text({} bytes)", t.expose_secret().len()),
            SecretValue::Bytes(b) => write!(f, "Bytes({} bytes)", b.expose_secret().len()),
            SecretValue::PrivateKey(k) => {
                write!(f, "PrivateKey({} bytes)", k.expose_secret().len())
            }
            SecretValue::Certificate { der, issuers, .. } => f
                .debug_struct("Certificate")
                .field("der_len", &der.len())
                .field("issuers", &issuers.len())
                .finish_non_exhaustive(),
            SecretValue::ColumnKey { wrapped, .. } => f
                .debug_struct("ColumnKey")
                .field("wrapped_len", &wrapped.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Look a secret up by name; `None` if the policy has no such secret.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<SecretValue>;

/// Replace every `$$cloister:NAME[:FORMAT]$$` in `template`. `@@N` is an error here (host
/// arguments are only for `args`; see [`resolve_arg`]).
pub fn resolve(template: &str, lookup: Lookup<'_>) -> Result<SecretString, Error> {
    render(template, None, lookup)
}

/// Like [`resolve`], and also replace `@@N` by `host_args[N]`, in one pass (a host argument is
/// never scanned for placeholders).
pub fn resolve_arg(
    template: &str,
    host_args: &[String],
    lookup: Lookup<'_>,
) -> Result<SecretString, Error> {
    render(template, Some(host_args), lookup)
}

fn render(
    template: &str,
    host_args: Option<&[String]>,
    lookup: Lookup<'_>,
) -> Result<SecretString, Error> {
    let mut out = Zeroizing::new(String::with_capacity(template.len()));
    for piece in scan(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Secret { name, format, .. } => {
                let format = match format {
                    None => None,
                    Some(f) => Some(Format::parse(f).ok_or_else(|| Error::UnknownFormat {
                        format: f.to_owned(),
                    })?),
                };
                let value = lookup(name).ok_or_else(|| Error::UnknownSecret {
                    name: name.to_owned(),
                })?;
                out.push_str(&value.render(name, format)?);
            }
            Piece::HostArg { index, .. } => {
                let Some(host_args) = host_args else {
                    return Err(Error::HostArg {
                        index,
                        reason: "host arguments are only allowed in args",
                    });
                };
                let arg = host_args.get(index).ok_or(Error::HostArg {
                    index,
                    reason: "the host supplied no such argument",
                })?;
                out.push_str(arg);
            }
        }
    }
    Ok(SecretString::from(std::mem::take(&mut *out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn lookup(name: &str) -> Option<SecretValue> {
        Some(match name {
            "pw" => SecretValue::text("s3cr3t"),
            "raw" => SecretValue::bytes(vec![0xde, 0xad, 0xbe, 0xef]),
            "key" => SecretValue::private_key(vec![1, 2, 3]),
            "cert" => SecretValue::Certificate {
                der: vec![0x30, 0x01],
                issuers: vec![vec![0x30, 0x02]],
                key: SecretBox::from(vec![9u8, 9].into_boxed_slice()),
            },
            _ => return None,
        })
    }

    fn ok(template: &str) -> String {
        resolve_arg(template, &["h0".into(), "h1".into()], &lookup)
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    #[rstest]
    #[case::plain_text("hello", "hello")]
    #[case::default_text("pw=$$cloister:pw$$!", "pw=s3cr3t!")]
    #[case::hex_text("$$cloister:pw:hex$$", "733363723374")]
    #[case::hex_bytes("$$cloister:raw:hex$$", "deadbeef")]
    #[case::base64_bytes("$$cloister:raw:base64$$", "3q2+7w==")]
    #[case::key_default(
        "$$cloister:key$$",
        "-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"
    )]
    #[case::key_pem(
        "$$cloister:key:pem$$",
        "-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"
    )]
    #[case::cert_crt(
        "$$cloister:cert:crt$$",
        "-----BEGIN CERTIFICATE-----\nMAE=\n-----END CERTIFICATE-----\n"
    )]
    #[case::cert_chain(
        "$$cloister:cert:chain$$",
        "-----BEGIN CERTIFICATE-----\nMAE=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMAI=\n-----END CERTIFICATE-----\n"
    )]
    #[case::cert_key(
        "$$cloister:cert:key$$",
        "-----BEGIN PRIVATE KEY-----\nCQk=\n-----END PRIVATE KEY-----\n"
    )]
    #[case::cert_hex("$$cloister:cert:hex$$", "3001")]
    #[case::host_arg("--url=@@1", "--url=h1")]
    #[case::two_in_a_row("$$cloister:pw$$$$cloister:pw$$", "s3cr3ts3cr3t")]
    #[case::lone_dollars("cost $$5 @@x", "cost $$5 @@x")]
    #[case::unicode("ü$$cloister:pw$$ü", "üs3cr3tü")]
    fn resolves(#[case] template: &str, #[case] expected: &str) {
        assert_eq!(ok(template), expected);
    }

    #[rstest]
    #[case::unknown_secret("$$cloister:nope$$", "placeholder-secret")]
    #[case::unknown_format("$$cloister:pw:rot13$$", "placeholder-format")]
    #[case::crt_of_text("$$cloister:pw:crt$$", "placeholder-format")]
    #[case::bytes_need_a_format("$$cloister:raw$$", "placeholder-format")]
    #[case::chain_of_key("$$cloister:key:chain$$", "placeholder-format")]
    #[case::unclosed("$$cloister:pw", "placeholder-syntax")]
    #[case::empty_name("$$cloister:$$", "placeholder-syntax")]
    #[case::missing_host_arg("@@7", "host-arg")]
    #[case::huge_host_arg("@@123456", "placeholder-syntax")]
    fn refuses(#[case] template: &str, #[case] rule: &str) {
        let err = resolve_arg(template, &["h0".into()], &lookup).unwrap_err();
        assert_eq!(err.rule(), rule, "{err}");
    }

    #[test]
    fn host_args_are_refused_outside_args() {
        let err = resolve("@@0", &lookup).unwrap_err();
        assert!(matches!(err, Error::HostArg { index: 0, .. }), "{err}");
    }

    #[test]
    fn regression_host_arg_cannot_inject_a_placeholder() {
        let out = resolve_arg("@@0", &["$$cloister:pw$$".into()], &lookup).unwrap();
        assert_eq!(out.expose_secret(), "$$cloister:pw$$");
    }

    #[test]
    fn secret_value_debug_shows_no_bytes() {
        for name in ["pw", "raw", "key", "cert"] {
            let debug = format!("{:?}", lookup(name).unwrap());
            assert!(
                !debug.contains("s3cr3t") && !debug.contains("222") && !debug.contains("[9"),
                "{debug}"
            );
        }
    }

    #[test]
    fn column_keys_render_wrapped_or_raw_and_never_debug_the_key() {
        let value = SecretValue::ColumnKey {
            key: SecretBox::from(vec![0xab; 32].into_boxed_slice()),
            wrapped: vec![1, 2, 3],
        };
        let lookup = |_: &str| {
            Some(SecretValue::ColumnKey {
                key: SecretBox::from(vec![0xab; 32].into_boxed_slice()),
                wrapped: vec![1, 2, 3],
            })
        };
        let out = |t: &str| resolve(t, &lookup).map(|s| s.expose_secret().to_owned());
        assert_eq!(out("$$cloister:c:hex$$").unwrap(), "010203");
        assert_eq!(out("$$cloister:c:base64$$").unwrap(), "AQID");
        assert_eq!(out("$$cloister:c:key$$").unwrap(), "ab".repeat(32));
        for bad in [
            "$$cloister:c$$",
            "$$cloister:c:pem$$",
            "$$cloister:c:chain$$",
        ] {
            assert!(
                matches!(out(bad), Err(Error::FormatNotApplicable { .. })),
                "{bad}"
            );
        }
        let debug = format!("{value:?}");
        assert!(
            debug.contains("wrapped_len: 3") && !debug.contains("171"),
            "{debug}"
        );
    }
}
