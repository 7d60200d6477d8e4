//! The CAS HTTP API's wire types and protocol rules, shared by the server and [`crate::client`].
//!
//! Every body is JSON. Byte strings are standard base64 (padded) unless a field says hex. Errors
//! are [`ErrorBody`] with a stable [`code`](ErrorBody::code); `GET /v1/openapi.json` documents
//! every route and schema.
//!
//! # Routes
//!
//! | method and path | body → answer | who |
//! | --- | --- | --- |
//! | `GET /v1/health` | → [`Health`] | anyone |
//! | `GET /v1/openapi.json` | → the OpenAPI document | anyone |
//! | `GET /.well-known/openid-configuration` | → [`OpenIdConfiguration`] | anyone |
//! | `GET /.well-known/jwks.json` | → the token signing keys (JWK set) | anyone |
//! | `POST /v1/namespaces` | [`CreateNamespace`] → [`NamespaceView`] (201) | [signed request](#signed-requests) by the admin key |
//! | `GET /v1/namespaces/{ns}` | → [`NamespaceView`] | signed request by the admin key or an owner of `ns` |
//! | `GET /v1/namespaces` | → [`NamespaceList`] (those the signer may read) | signed request |
//! | `PUT /v1/namespaces/{ns}` | [`UpdateNamespace`] → [`NamespaceView`] | signed request by the admin key |
//! | `DELETE /v1/namespaces/{ns}` | → [`NamespaceView`] (the deleted one) | signed request by the admin key; only when it holds no session |
//! | `POST /v1/sessions` | signed policy → [`SessionSummary`] (201) | owners' signatures in the body, and a [signed request](#signed-requests) by an owner of the namespace |
//! | `PUT /v1/sessions/{name}` | signed policy → [`SessionSummary`] | owners of the current version |
//! | `GET /v1/sessions/{name}` | → [`SessionView`] | [signed request](#signed-requests) by an owner or reader |
//! | `GET /v1/sessions` | → [`SessionList`] (those the signer may read) | signed request |
//! | `DELETE /v1/sessions/{name}` | [`DeleteSession`] → [`SessionSummary`] | M of N owners, as for an update |
//! | `POST /v1/nonce` | → [`NonceResponse`] | anyone |
//! | `POST /v1/attest` | [`AttestRequest`] → [`AttestResponse`] | a workload with evidence |
//! | `GET /v1/audit/head` | → [`AuditHead`] | anyone (for outside monitors) |
//! | `GET /v1/audit/entries?after=N&limit=M&session=S` | → [`AuditEntries`] | signed request: the auditor (all entries), owners and readers (their sessions' entries) |
//! | `GET /v1/audit/verify` | → [`AuditVerification`] | signed request by the auditor |
//!
//! Session names are exactly `namespace/name`, each segment `[a-z0-9][a-z0-9._-]{0,62}` (see
//! [`crate::names`]); they go into the path as they are (`/v1/sessions/demo/nyc-taxi`).
//!
//! # Reading the audit log
//!
//! The log holds names, hashes, owner fingerprints and which secrets went to which workload key
//! (never a secret value), so reading it is authorised like reading a session: a signed request
//! whose principal is an owner or a `read` principal of a session's current policy (of its last
//! version, for a deleted session) gets that session's entries; the **auditor key** configured
//! on the CAS (`cas serve --auditor-key`) gets every entry, including those naming no session
//! (the CAS's own keys) or a session that never existed (refused attestations). Only the signed
//! head is public, so that outside monitors can pin it. No signature: 401 `unauthenticated`;
//! `session=S` for a session the signer may not read, or `/v1/audit/verify` by anyone but the
//! auditor: 403 `forbidden`, rule `audit-read`.
//!
//! A read never loads the log: the CAS seeks to `after` with a sparse index and goes through at
//! most [`MAX_AUDIT_ENTRIES`] entries kept and a configured number of bytes (4 MiB by default).
//! When it stops before the end of the log, [`AuditEntries::more`] is true and
//! [`AuditEntries::next`] is the `after` of the next read; a signer who may read few sessions
//! may get an empty page with `more` (the entries scanned were other sessions'). Paging
//! `after = next` while `more` visits every entry exactly once.
//!
//! `/v1/audit/verify` checks what was appended since its previous call (and re-reads the last
//! entry it checked), not the whole log each time: its cost is bounded by the appends, not by
//! the log's size. The full check is `cloister audit verify` on the files or on the entries
//! fetched by the auditor.
//!
//! # Signed requests
//!
//! Reads of sessions, namespaces and the audit log, every namespace change and the namespace
//! owner's approval of a session's creation are authenticated by an Ed25519 signature of the
//! principal over the request, **bound to this CAS**:
//!
//! ```text
//! Authorization: Cloister-Sig key=<base64 SPKI DER>,ts=<unix seconds>,sig=<base64 64 bytes>
//! signed message = "cloister-req-v2" 0x00 ‖ CAS id (32 bytes) ‖ METHOD 0x00 ‖ PATH?QUERY 0x00
//!                  ‖ ts (decimal) 0x00 ‖ SHA-256(body)
//! ```
//!
//! The CAS id ([`CasId`]) is the SHA-256 of the SubjectPublicKeyInfo of the CAS's TLS
//! certificate: the client computes it from the certificate it pins (no round trip, nothing an
//! attacker could substitute), and `GET /v1/health` shows it (`cas_id`). A request signed for
//! one CAS therefore does not verify at another, even one sharing keys and names.
//!
//! The key is carried so that readers listed by fingerprint only can be verified; the CAS
//! re-encodes it and takes SHA-256 of the DER as the principal's fingerprint. `ts` must be within
//! the configured window (±300 s) of the CAS's clock. A signed *read* can be replayed within
//! that window by whoever saw it, which only repeats a read over TLS to the same party. A
//! signed request that *changes state* (`POST`, `PUT`, `DELETE`) is accepted once: the CAS
//! remembers its signature until its timestamp leaves the window (in memory, at most
//! [`MAX_REMEMBERED_SIGNATURES`]; when full it answers 503 rather than forget one), and refuses
//! a second use with rule `replay`.
//!
//! # Namespaces
//!
//! The first segment of a session name is its namespace. The operator's admin key (set with
//! `cloister cas init --admin-key`) creates namespaces and names their owners and session
//! quota ([`DEFAULT_SESSION_QUOTA`] by default). Creating session `ns/name` needs, besides the
//! policy's own owner signatures, a signed request (`POST /v1/sessions` with the header above)
//! by an owner of `ns`. The approval is the signed request rather than a signature inside the
//! policy so that it is fresh (a timestamp, accepted once) and bound to this CAS: a policy
//! JSON, which lives in git, can never carry it to another CAS or into the future. Updates and
//! deletions stay with the session's owners.
//!
//! # No resurrection
//!
//! Deleting a session leaves a tombstone (its last version and hash). Creating that name
//! again needs a version above the tombstone's whose `predecessor` is the tombstone's hash, so
//! the owners sign a document that names the deletion, plus a fresh namespace owner approval.
//! Re-pushing the old signed policy is refused with rule `resurrection`.
//!
//! Refusal rules of session and namespace changes: `name` (not `namespace/name`), `namespace`
//! (no such namespace), `unauthorised` (no approval by an owner of the namespace, or not the
//! admin key), `quota` (the namespace is full), `resurrection` (a deleted name without a
//! version above its tombstone naming it), `admin-key` (no admin key is set), `not-empty`
//! (deleting a namespace that holds sessions), and for the signature header itself `signature`,
//! `timestamp`, `replay`.
//!
//! # Deleting a session
//!
//! Owners approve a deletion like an update: each signs, with the policy signing scheme
//! (`OwnerKey::sign`), the [`deletion_hash`] of the session name and its current head hash. A
//! deletion signature therefore cannot be replayed for another session or another version.
//!
//! # The sealed configuration
//!
//! [`AttestResponse::config`] is HPKE-sealed (see [`crate::envelope`]) to the workload key the
//! request presented, with associated data [`config_aad`]:
//!
//! ```text
//! "cloister-attest-v1" 0x00 ‖ session 0x00 ‖ service 0x00 ‖ nonce (its raw bytes)
//! ```
//!
//! Session and service names cannot contain a zero byte, so the encoding is unambiguous. The
//! plaintext is the JSON of [`SealedConfig`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

use crate::envelope::Sealed;

/// The `Authorization` scheme of signed requests.
pub const AUTH_SCHEME: &str = "Cloister-Sig";

/// The domain-separation prefix of signed requests.
pub const REQUEST_CONTEXT: &[u8] = b"cloister-req-v2\0";

/// How many state-changing request signatures the CAS remembers at most (see
/// [signed requests](self#signed-requests)).
pub const MAX_REMEMBERED_SIGNATURES: usize = 100_000;

/// The session quota of a namespace created without one.
pub const DEFAULT_SESSION_QUOTA: u64 = 1000;

/// The most owners a namespace may have.
pub const MAX_NAMESPACE_OWNERS: usize = 64;

/// The identity of one CAS that request signatures are bound to: SHA-256 of the
/// SubjectPublicKeyInfo DER of its TLS certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CasId(pub [u8; 32]);

impl CasId {
    /// The id of the CAS whose TLS certificate is `cert_der`; `None` if it does not parse.
    pub fn of_certificate_der(cert_der: &[u8]) -> Option<Self> {
        use x509_cert::der::{Decode as _, Encode as _};
        let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
        Some(CasId(Sha256::digest(&spki).into()))
    }

    /// The id from the first certificate of a PEM (a pinned `cas.crt`).
    pub fn of_certificate_pem(pem_text: &str) -> Option<Self> {
        let first = pem::parse_many(pem_text)
            .ok()?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")?;
        Self::of_certificate_der(first.contents())
    }
}

impl std::fmt::Display for CasId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CasId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CasId({self})")
    }
}

impl std::str::FromStr for CasId {
    type Err = hex::FromHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b)?;
        Ok(CasId(b))
    }
}

/// The domain-separation prefix of the sealed configuration's associated data.
pub const CONFIG_AAD_CONTEXT: &[u8] = b"cloister-attest-v1\0";

/// The domain-separation prefix of a deletion's hash.
pub const DELETE_CONTEXT: &[u8] = b"cloister-delete-v1\0";

/// The message a principal signs for a request to the CAS `cas` (see the
/// [module docs](self#signed-requests)).
pub fn request_signing_message(
    cas: &CasId,
    method: &str,
    path_and_query: &str,
    ts: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(REQUEST_CONTEXT.len() + path_and_query.len() + 96);
    m.extend_from_slice(REQUEST_CONTEXT);
    m.extend_from_slice(&cas.0);
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(path_and_query.as_bytes());
    m.push(0);
    m.extend_from_slice(ts.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(&Sha256::digest(body));
    m
}

/// The associated data of the sealed configuration (see the [module docs](self#the-sealed-configuration)).
pub fn config_aad(session: &str, service: &str, nonce: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        CONFIG_AAD_CONTEXT.len() + session.len() + service.len() + 2 + nonce.len(),
    );
    aad.extend_from_slice(CONFIG_AAD_CONTEXT);
    aad.extend_from_slice(session.as_bytes());
    aad.push(0);
    aad.extend_from_slice(service.as_bytes());
    aad.push(0);
    aad.extend_from_slice(nonce);
    aad
}

/// What owners sign to delete session `name` whose current head is `head`: SHA-256 of
/// `"cloister-delete-v1" 0x00 ‖ name 0x00 ‖ head (hex)`, signed like a session hash.
pub fn deletion_hash(
    name: &str,
    head: &cloister_policy::SessionHash,
) -> cloister_policy::SessionHash {
    let mut m = Vec::with_capacity(DELETE_CONTEXT.len() + name.len() + 65);
    m.extend_from_slice(DELETE_CONTEXT);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(head.to_string().as_bytes());
    cloister_policy::SessionHash::of(&m)
}

/// A parsed `Authorization: Cloister-Sig …` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signer's SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub ts: u64,
    /// The Ed25519 signature.
    pub sig: [u8; 64],
}

impl SignatureHeader {
    /// The header value.
    pub fn to_header_value(&self) -> String {
        format!(
            "{AUTH_SCHEME} key={},ts={},sig={}",
            B64.encode(&self.spki_der),
            self.ts,
            B64.encode(self.sig)
        )
    }

    /// Parses a header value; `None` if it is not exactly the scheme's form.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.strip_prefix(AUTH_SCHEME)?.strip_prefix(' ')?;
        let (mut key, mut ts, mut sig) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            let slot = match k {
                "key" => &mut key,
                "ts" => &mut ts,
                "sig" => &mut sig,
                _ => return None,
            };
            if slot.replace(v).is_some() {
                return None;
            }
        }
        Some(Self {
            spki_der: B64.decode(key?).ok()?,
            ts: ts?.parse().ok()?,
            sig: B64.decode(sig?).ok()?.try_into().ok()?,
        })
    }
}

// ---- errors -----------------------------------------------------------------------------------

/// Every error answer. `code` is stable; `message` says what to do; `rule` names the failed
/// rule when one did; `reasons` lists every problem of an invalid policy. No body ever carries a
/// secret, a stack trace or a file path.
///
/// A refused attestation (`attestation-refused`) is answered to anyone who asks for the
/// session, so it never carries a value of the session's policy: `rules` lists the ids of the
/// failed rules (`security.tees`, `services[job].attestation[0].measurement`, `security.rego`,
/// `secrets[db].export`, `nonce`, `evidence`, `service`, …), `audit_seq` the audit entry that
/// holds every detail (pinned and presented values, Rego messages), which the session's owners
/// read; `reasons` keeps the details only of what the caller sent itself (`nonce: expired`,
/// `evidence: report_data mismatch …`). Repeated identical refusals point to the entry of the
/// first one (see the audit module docs on folding).
///
/// A refused update or deletion of a session (`PUT`/`DELETE /v1/sessions/{name}`) that carries
/// no valid signature of an owner of the session's current version says only `unsigned` or
/// `approvals` (and the problems of the caller's own document: `invalid-policy`, `name`): the
/// head hash, version and owners a `predecessor`, `version` or `bad-signature` refusal names are
/// told only to a request a current owner signed.
///
/// | status | code | when |
/// | --- | --- | --- |
/// | 400 | `bad-request` | malformed JSON, base64, key or header; a session or service name that breaks the name syntax; evidence over 64 KiB; too many or too long host arguments |
/// | 401 | `unauthenticated` | a request without a valid signed-request header (`rule`: `signature`, `timestamp`, `replay`) |
/// | 403 | `forbidden` | the signer may not read the session (`rule: read`) or these audit entries (`rule: audit-read`) |
/// | 403 | `session-refused` | a create, update or delete is not authorised (`rule`: `unsigned`, `approvals`, `bad-signature`, `version`, `name`, `namespace`, `unauthorised`, `quota`, `resurrection`) |
/// | 403 | `namespace-refused` | a namespace change is not authorised (`rule`: `admin-key`, `unauthorised`, `name`, `owners`, `not-empty`) |
/// | 403 | `attestation-refused` | evidence, nonce, appraisal or an import failed, or the session has no such service; `rules` names each rule, `audit_seq` the entry with the details |
/// | 404 | `not-found` | no such session, or no such route |
/// | 405 | `method-not-allowed` | the route exists for another method |
/// | 408 | `timeout` | the request took longer than the configured limit |
/// | 409 | `conflict` | the session exists, or the predecessor / head is not the current one (`rule: predecessor`; told only to a request a current owner signed) |
/// | 413 | `payload-too-large` | the body is over the limit (1 MiB by default) |
/// | 422 | `invalid-policy` | the policy breaks the language's rules; `reasons` has each problem |
/// | 422 | `unresolvable-configuration` | the service's configuration cannot be resolved (`rule`: `host-arg`, `placeholder-format`, …) |
/// | 429 | `rate-limited` | this client (peer IP address) sent too many nonce, attest or session requests; `Retry-After` says when to retry (`rule: rate-limit`) |
/// | 503 | `unavailable` | storage or an import source is unavailable, or too many recent attestations to remember their nonces |
/// | 500 | `internal` | a bug; details only in the CAS log |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable error code.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The rule that failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Every problem, `path: what` (invalid policies); for a refused attestation only the
    /// failures of what the caller sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// A refused attestation: the id of every failed rule, sorted, without values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// A refused attestation: the `seq` of the audit entry with the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

// ---- health and discovery ---------------------------------------------------------------------

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok` when the CAS answers.
    pub status: String,
    /// The CAS's version.
    pub version: String,
    /// The issuer (base URL) of its tokens.
    pub issuer: String,
    /// The audit log's public key (SEC1 compressed P-256 point, hex).
    pub audit_public_key: String,
    /// The CAS id that request signatures are bound to ([`CasId`], hex).
    #[serde(default)]
    pub cas_id: String,
    /// Whether an admin key is set (namespaces can be created).
    #[serde(default)]
    pub admin_key_set: bool,
}

/// `GET /.well-known/openid-configuration`: where relying parties find the token keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct OpenIdConfiguration {
    /// The `iss` of the CAS's tokens.
    pub issuer: String,
    /// The JWK set URL.
    pub jwks_uri: String,
    /// Always `["ES256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Always `["public"]`.
    pub subject_types_supported: Vec<String>,
    /// Always `["id_token"]`.
    pub response_types_supported: Vec<String>,
    /// The claims of attestation tokens.
    pub claims_supported: Vec<String>,
}

// ---- namespaces -------------------------------------------------------------------------------

/// A namespace owner in a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamespaceOwnerJson {
    /// A name for people (1 to 64 printable characters).
    pub name: String,
    /// The owner's Ed25519 public key: SPKI DER, base64 (or PEM).
    pub public_key: String,
}

impl NamespaceOwnerJson {
    /// The owner `name` with `key` (a policy owner's public key, as `cloister keys gen` makes).
    pub fn of(name: &str, key: &cloister_policy::PublicKey) -> Result<Self, crate::Error> {
        Ok(Self {
            name: name.to_owned(),
            public_key: key.to_pem()?,
        })
    }
}

/// A namespace owner in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NamespaceOwnerView {
    /// The owner's name.
    pub name: String,
    /// The owner's public key, SPKI DER, base64.
    pub public_key: String,
    /// SHA-256 of that DER, hex: how the audit log names the owner.
    pub fingerprint: String,
}

/// `POST /v1/namespaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    /// The namespace, one name segment.
    pub name: String,
    /// Its owners (1 to [`MAX_NAMESPACE_OWNERS`]).
    pub owners: Vec<NamespaceOwnerJson>,
    /// How many sessions it may hold (default [`DEFAULT_SESSION_QUOTA`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_quota: Option<u64>,
}

/// `PUT /v1/namespaces/{ns}`: what changes; absent fields stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateNamespace {
    /// The version being updated (`conflict` if it moved).
    pub version: u64,
    /// The new owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<NamespaceOwnerJson>>,
    /// The new session quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_quota: Option<u64>,
}

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NamespaceView {
    /// The namespace.
    pub name: String,
    /// Its owners.
    pub owners: Vec<NamespaceOwnerView>,
    /// How many sessions it may hold.
    pub session_quota: u64,
    /// How many it holds.
    pub sessions: u64,
    /// Its version (1 when created).
    pub version: u64,
    /// When it was created (RFC 3339).
    pub created: String,
    /// When it last changed (RFC 3339).
    pub updated: String,
}

/// `GET /v1/namespaces`: the namespaces the signer may read, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NamespaceList {
    /// The namespaces, sorted by name.
    pub namespaces: Vec<NamespaceView>,
}

// ---- sessions ---------------------------------------------------------------------------------

/// A policy version with owner signatures (the policy crate's `SignedPolicy` wire form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "server", schema(title = "SignedPolicy"))]
// As strict as the policy crate's `SignedPolicy`, which the server parses: the schema then says
// `additionalProperties: false`.
#[serde(deny_unknown_fields)]
pub struct SignedPolicyJson {
    /// The policy YAML; its exact bytes are hashed.
    pub yaml: String,
    /// Detached owner signatures over the session hash.
    #[serde(default)]
    pub signatures: Vec<SignatureJson>,
}

/// One owner's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SignatureJson {
    /// SHA-256 of the owner's SPKI DER, hex.
    pub key_fingerprint: String,
    /// The 64-byte Ed25519 signature, base64.
    pub sig: String,
}

/// A session version's identity (created, updated, deleted, listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SessionSummary {
    /// `namespace/name`.
    pub name: String,
    /// The version number.
    pub version: u64,
    /// The session hash, hex.
    pub hash: String,
    /// When the CAS accepted it (RFC 3339).
    pub created: String,
}

/// `GET /v1/sessions/{name}`: the version in force and the history. Never a generated secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// `namespace/name`.
    pub name: String,
    /// The version in force.
    pub version: u64,
    /// Its hash, hex.
    pub hash: String,
    /// Its YAML, exactly as signed.
    pub yaml: String,
    /// Its owner signatures.
    pub signatures: Vec<SignatureJson>,
    /// When it was accepted (RFC 3339).
    pub created: String,
    /// Every version, oldest first.
    pub history: Vec<SessionSummary>,
}

/// `GET /v1/sessions`: the sessions the signer may read, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SessionList {
    /// The sessions, sorted by name.
    pub sessions: Vec<SessionSummary>,
}

/// `DELETE /v1/sessions/{name}`: owner approvals of the deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeleteSession {
    /// The current head's hash, hex (the deletion fails with `conflict` if it moved).
    pub head: String,
    /// Owner signatures over [`deletion_hash`]`(name, head)`.
    pub signatures: Vec<SignatureJson>,
}

// ---- nonces and attestation -------------------------------------------------------------------

/// `POST /v1/nonce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NonceResponse {
    /// 56 bytes, base64: issue time, randomness and the CAS's MAC over both (opaque to
    /// clients). Single use, valid until `expires_at`.
    pub nonce: String,
    /// When it expires (seconds since the Unix epoch).
    pub expires_at: u64,
}

/// The most evidence `POST /v1/attest` takes, in bytes (decoded): SGX / TDX quotes with their
/// certification chain, SEV-SNP reports and MAA tokens are a few KiB.
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;
/// The most host arguments `POST /v1/attest` takes.
pub const MAX_HOST_ARGS: usize = 64;
/// The longest host argument `POST /v1/attest` takes, in bytes.
pub const MAX_HOST_ARG_BYTES: usize = 4096;

/// `POST /v1/attest`. `session` and `service` must follow the name syntax
/// ([`cloister_policy::names`]), `evidence` be at most [`MAX_EVIDENCE_BYTES`], `host_args` at
/// most [`MAX_HOST_ARGS`] of at most [`MAX_HOST_ARG_BYTES`] each; otherwise the request is a
/// `bad-request`, checked before anything is logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The session (`namespace/name`).
    pub session: String,
    /// The service within it.
    pub service: String,
    /// The evidence, base64.
    pub evidence: String,
    /// Its kind (`sgx`, `tdx`, `snp`, `maa`, `sim`); detected from the bytes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(value_type = Option<String>, example = "sim"))]
    pub kind: Option<cloister_attest::EvidenceKind>,
    /// Collateral: DCAP collateral JSON (`sgx`, `tdx`); `{"vcek": b64 DER or PEM, "chain": PEM}`
    /// (`snp`); none for `sim` and `maa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "server", schema(value_type = Option<Object>))]
    pub collateral: Option<serde_json::Value>,
    /// The nonce from `POST /v1/nonce`, base64.
    pub nonce: String,
    /// The workload's P-256 public key (SPKI DER), base64: what the evidence binds.
    pub public_key: String,
    /// The host's arguments, for `@@N` in the service's `args`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_args: Vec<String>,
}

/// SEV-SNP collateral in [`AttestRequest::collateral`]: its OpenAPI schema, and a way to write
/// it. The CAS does not parse it with this type: [`cloister_attest::Collateral::from_json`] is the
/// one parser of collateral (a test checks that the two describe the same JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SnpCollateral {
    /// The VCEK certificate: base64 of the DER, or PEM.
    pub vcek: String,
    /// The ASK and ARK, PEM (the bundled AMD ones are used when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// The answer to a passed attestation. `Debug` leaves the token out: it is a bearer secret.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AttestResponse {
    /// The attestation token (ES256 JWT, keys at `/.well-known/jwks.json`, `aud` =
    /// `<session>/<service>`; see [`crate::token`]).
    #[serde(with = "secret_string")]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub token: SecretString,
    /// The workload key's certificate from the session CA, PEM.
    pub certificate_pem: String,
    /// The session CA's certificate, PEM.
    pub ca_pem: String,
    /// The hash of the policy version the workload was appraised against, hex.
    pub session_hash: String,
    /// The token's expiry (seconds since the Unix epoch).
    pub expires_at: u64,
    /// The service's configuration, sealed to the workload key (JSON of [`SealedConfig`]).
    pub config: Sealed,
}

impl fmt::Debug for AttestResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestResponse")
            .field("token_len", &self.token.expose_secret().len())
            .field("certificate_pem", &self.certificate_pem)
            .field("ca_pem", &self.ca_pem)
            .field("session_hash", &self.session_hash)
            .field("expires_at", &self.expires_at)
            .field("config", &self.config)
            .finish()
    }
}

/// Serde for a [`SecretString`] field: the wire carries the plain string (over TLS); in memory
/// it stays wrapped.
mod secret_string {
    use secrecy::{ExposeSecret as _, SecretString};
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose_secret())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}

/// The plaintext of [`AttestResponse::config`].
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct SealedConfig<S> {
    /// The session.
    pub session: String,
    /// The service.
    pub service: String,
    /// The policy version's hash, hex.
    pub session_hash: String,
    /// The program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<S>,
    /// The arguments.
    #[serde(default)]
    pub args: Vec<S>,
    /// The environment.
    #[serde(default)]
    pub env: BTreeMap<String, S>,
    /// The injected files.
    #[serde(default)]
    pub files: Vec<SealedFile<S>>,
}

/// A file in [`SealedConfig`].
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: Deserialize<'de>"))]
pub struct SealedFile<S> {
    /// Absolute path in the workload.
    pub path: String,
    /// The content.
    pub content: S,
    /// Permission bits.
    pub mode: u32,
}

// ---- audit ------------------------------------------------------------------------------------

/// `GET /v1/audit/head`: the signed head of the audit log, for outside monitors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditHead {
    /// The last acknowledged entry's `seq` (0: empty log).
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
    /// The head signature (see the audit module docs), hex.
    pub signature: String,
    /// The log's public key (SEC1 compressed P-256 point, hex).
    pub public_key: String,
}

/// `GET /v1/audit/entries`: the entries the signer may read, from one bounded scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditEntries {
    /// The entries, in order, exactly as stored.
    #[cfg_attr(feature = "server", schema(value_type = Vec<Object>))]
    pub entries: Vec<crate::audit::Entry>,
    /// Whether the scan stopped before the end of the log (more entries may follow).
    pub more: bool,
    /// When `more`: the `after` of the next read (the last entry scanned, kept or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /v1/audit/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// Whether the log verifies.
    pub ok: bool,
    /// Complete, verified entries.
    pub entries: u64,
    /// The `seq` the signed head covers.
    pub head_seq: u64,
    /// The last entry's hash, hex.
    pub last_hash: String,
    /// When it does not verify: what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When it does not verify: the `cloister audit verify` exit code of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Query of `GET /v1/audit/entries`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::IntoParams))]
pub struct AuditEntriesQuery {
    /// Entries with `seq` greater than this (default 0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default and maximum 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only this session's entries (the signer must be allowed to read them).
    #[serde(default)]
    pub session: Option<String>,
}

impl AuditEntriesQuery {
    /// The path and query of this read (what a signed request signs).
    pub fn path_and_query(&self) -> String {
        let mut path = format!("/v1/audit/entries?after={}", self.after);
        if let Some(limit) = self.limit {
            path.push_str(&format!("&limit={limit}"));
        }
        if let Some(session) = &self.session {
            let encoded =
                percent_encoding::utf8_percent_encode(session, percent_encoding::NON_ALPHANUMERIC);
            path.push_str(&format!("&session={encoded}"));
        }
        path
    }
}

/// The largest `limit` of `GET /v1/audit/entries`.
pub const MAX_AUDIT_ENTRIES: usize = 1000;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn debug_attest_response_omits_the_token() {
        let response = AttestResponse {
            token: SecretString::from("eyJ.CANARY-token.sig"),
            certificate_pem: "cert".into(),
            ca_pem: "ca".into(),
            session_hash: "ab".into(),
            expires_at: 7,
            config: Sealed {
                enc: vec![1],
                ciphertext: vec![2],
            },
        };
        let debug = format!("{response:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(
            debug.contains("token_len: 20") && debug.contains("ab"),
            "{debug}"
        );
        // On the wire (over TLS) the token is the plain string, and it reads back.
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["token"], "eyJ.CANARY-token.sig");
        let back: AttestResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back.token.expose_secret(), "eyJ.CANARY-token.sig");
    }

    #[test]
    fn signature_header_round_trips() {
        let h = SignatureHeader {
            spki_der: vec![1, 2, 3],
            ts: 1_800_000_000,
            sig: [7; 64],
        };
        let v = h.to_header_value();
        assert!(v.starts_with("Cloister-Sig key=AQID,ts=1800000000,sig="));
        assert_eq!(SignatureHeader::parse(&v), Some(h));
    }

    #[test]
    fn malformed_signature_headers_are_refused() {
        for bad in [
            "",
            "Bearer x",
            "Cloister-Sig",
            "Cloister-Sig key=AQID,ts=1",
            "Cloister-Sig key=AQID,ts=x,sig=AA==",
            "Cloister-Sig key=AQID,ts=1,sig=AA==",
            "Cloister-Sig key=AQID,key=AQID,ts=1,sig=AA==",
            "Cloister-Sig key=AQID,ts=1,sig=AA==,extra=1",
        ] {
            assert_eq!(SignatureHeader::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn signed_message_separates_its_fields() {
        let cas = CasId([1; 32]);
        let a = request_signing_message(&cas, "GET", "/v1/sessions/a", 1, b"");
        assert_ne!(
            a,
            request_signing_message(&cas, "GET", "/v1/sessions/a", 1, b"x")
        );
        assert_ne!(
            a,
            request_signing_message(&cas, "GET", "/v1/sessions/a", 2, b"")
        );
        assert_ne!(
            a,
            request_signing_message(&cas, "PUT", "/v1/sessions/a", 1, b"")
        );
        assert_ne!(
            a,
            request_signing_message(&CasId([2; 32]), "GET", "/v1/sessions/a", 1, b"")
        );
        assert!(a.starts_with(REQUEST_CONTEXT));
    }

    #[test]
    fn aad_names_session_service_and_nonce() {
        let aad = config_aad("demo/x", "driver", &[9; 32]);
        assert_eq!(&aad[..CONFIG_AAD_CONTEXT.len()], CONFIG_AAD_CONTEXT);
        assert_ne!(aad, config_aad("demo/x", "executor", &[9; 32]));
        assert_ne!(aad, config_aad("demo/x", "driver", &[8; 32]));
        assert!(aad.ends_with(&[9; 32]));
    }

    #[test]
    fn deletion_hash_binds_name_and_head() {
        let h = cloister_policy::SessionHash::of("v1");
        let d = deletion_hash("a/b", &h);
        assert_ne!(d, deletion_hash("a/c", &h));
        assert_ne!(
            d,
            deletion_hash("a/b", &cloister_policy::SessionHash::of("v2"))
        );
        assert_ne!(d, h);
    }
}
