//! What each endpoint does, as synchronous functions over [`Inner`] (called through
//! `spawn_blocking`: the store and the audit log wait for `fsync`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::{Claims, Collateral, Context, Error as AttestError, Fault, binding};
use cloister_policy::{
    KeyFingerprint, Policy, SecretKind, SignedPolicy, authorize_create, authorize_read,
    authorize_recreate, authorize_update, names, signed_by_an_owner,
};
use ed25519_dalek::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

use super::error::ApiError;
use super::namespaces::SignedRequest;
use super::nonces::TakeError;
use super::refusals::{Decision, Failed, Key, UNKNOWN_SERVICE_RULE, rule_ids};
use super::state::Inner;
use crate::api::{
    self, AttestRequest, AttestResponse, AuditEntries, AuditEntriesQuery, AuditHead,
    AuditVerification, DeleteSession, NonceResponse, SealedConfig, SealedFile, SessionList,
    SessionSummary, SessionView, SignatureHeader, SignatureJson,
};
use crate::audit::{self, AuditError, Event, EventKind, Receipt, key_digest};
use crate::secrets::{Resolved, Secrets};
use crate::token::AttestationClaims;
use crate::{Error, NonceRejection, Session, SessionSignature, SessionVersion, envelope};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(text.trim())
        .map_err(|_| ApiError::BadRequest(format!("`{field}` is not base64")))
}

fn summary(name: &str, v: &SessionVersion) -> SessionSummary {
    SessionSummary {
        name: name.to_owned(),
        version: v.version,
        hash: v.hash.to_string(),
        created: rfc3339(v.created),
    }
}

fn signatures_json(v: &SessionVersion) -> Vec<SignatureJson> {
    v.signatures
        .iter()
        .map(|s| SignatureJson {
            key_fingerprint: hex::encode(&s.signer),
            sig: B64.encode(&s.signature),
        })
        .collect()
}

/// The fingerprints of the owners among `signed`'s signers, comma-separated (for the log).
fn owner_signers(policy: &Policy, signatures: &[cloister_policy::Signature]) -> String {
    signatures
        .iter()
        .filter(|s| policy.access().owner(&s.key_fingerprint).is_some())
        .map(|s| s.key_fingerprint.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(",")
}

impl Inner {
    /// Appends to the audit log; a failure fails the request (nothing is answered unaudited).
    pub fn record(&self, event: &Event) -> Result<(), ApiError> {
        self.record_all(std::slice::from_ref(event))
    }

    /// Appends `events` as adjacent entries in one batch; a failure fails the request. Counts
    /// of folded refusals that are due (see `refusals.rs`) go first, in the same batch.
    pub fn record_all(&self, events: &[Event]) -> Result<(), ApiError> {
        let now = self.config.now();
        let mut batch = self.refusals.due_before(events, now);
        batch.extend_from_slice(events);
        self.append_batch(&batch, now).map(|_| ())
    }

    fn append_batch(&self, events: &[Event], now: SystemTime) -> Result<Vec<Receipt>, ApiError> {
        self.audit.append_all(events, now).map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            ApiError::Unavailable("the audit log is unavailable".into())
        })
    }

    /// Records a refused session change. Called only for a request that a current owner of the
    /// session (an update or deletion) or an owner of its namespace (a creation) signed: anyone
    /// else's refusals are answered and not recorded, so that no caller can write into a
    /// session's stream (see the audit module docs, "What the log records").
    fn record_session_refusal(&self, session: Option<&str>, rule: &str, message: &str) {
        let mut event =
            Event::new(EventKind::SessionChangeRefused).reason(format!("{rule}: {message}"));
        if let Some(s) = session {
            event = event.session(s);
        }
        // A refusal is answered even if it cannot be logged; the failure is in the CAS log.
        if let Err(e) = self.record(&event) {
            tracing::error!(?e, "could not audit a refused session change");
        }
    }

    // ---- signed requests ----------------------------------------------------------------------

    /// Checks a signed-request header bound to this CAS; returns the signer's key fingerprint.
    /// A request that changes state (`POST`, `PUT`, `DELETE`) is accepted once: its signature
    /// is remembered until its timestamp leaves the window (rule `replay`).
    pub fn authenticate(
        &self,
        header: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<KeyFingerprint, ApiError> {
        let unauthenticated = |m: &str| ApiError::Unauthenticated(m.to_owned());
        let refused =
            |rule: &'static str, message: String| ApiError::SignatureRefused { rule, message };
        let header = header.ok_or_else(|| {
            unauthenticated(
                "this request must be signed: Authorization: Cloister-Sig key=…,ts=…,sig=…",
            )
        })?;
        let parsed = SignatureHeader::parse(header).ok_or_else(|| {
            unauthenticated("the Authorization header is not a Cloister-Sig signature")
        })?;
        let key = ed25519_dalek::VerifyingKey::from_public_key_der(&parsed.spki_der)
            .map_err(|_| unauthenticated("the signing key is not an Ed25519 public key"))?;
        let now = unix(self.config.now());
        let window = self.config.signature_window().as_secs();
        if parsed.ts.abs_diff(now) > window {
            return Err(refused(
                "timestamp",
                format!("the signature's timestamp is more than {window} s from the CAS's clock"),
            ));
        }
        let message =
            api::request_signing_message(&self.cas_id, method, path_and_query, parsed.ts, body);
        let sig = ed25519_dalek::Signature::from_bytes(&parsed.sig);
        key.verify_strict(&message, &sig).map_err(|_| {
            refused(
                "signature",
                format!(
                    "the request signature does not verify for this CAS (id {}; sign the \
                     method, path, time and body for it)",
                    self.cas_id
                ),
            )
        })?;
        let der = key.to_public_key_der().map_err(|_| ApiError::Internal)?;
        let principal = KeyFingerprint::of_spki_der(der.as_bytes());
        // A state-changing signature is accepted once. Only a key that can change something
        // (the admin key, a namespace owner) takes a place in the table of used signatures:
        // anyone else's change is refused by authorisation whatever it replays, and a table
        // that any self-made key could fill would lock out the admin and every owner. A place
        // is kept for the window after the signature's time, no later than now.
        if matches!(method, "POST" | "PUT" | "DELETE") && self.may_change_something(&principal)? {
            let expires = parsed.ts.min(now).saturating_add(window);
            match self.used_signatures.remember(&parsed.sig, expires, now) {
                Ok(()) => {}
                Err(super::replay::Refused::Replayed) => {
                    return Err(refused(
                        "replay",
                        "this signed request was accepted before; sign it again".into(),
                    ));
                }
                Err(super::replay::Refused::Full) => {
                    return Err(ApiError::Unavailable(
                        "too many signed changes in the last minutes; retry later".into(),
                    ));
                }
            }
        }
        Ok(principal)
    }

    /// Whether `principal` is the admin key or an owner of a namespace: the keys whose signed
    /// changes the CAS may accept.
    fn may_change_something(&self, principal: &KeyFingerprint) -> Result<bool, ApiError> {
        if let Some(der) = self.store.admin_key()?
            && KeyFingerprint::of_spki_der(&der) == *principal
        {
            return Ok(true);
        }
        for name in self.store.namespace_names()? {
            if let Some(ns) = self.store.namespace(&name)?
                && ns
                    .owners
                    .iter()
                    .any(|o| KeyFingerprint::of_spki_der(&o.public_key) == *principal)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    // ---- sessions -----------------------------------------------------------------------------

    /// Creates a session: the namespace owner's approval (the signed request), the policy's
    /// own owner signatures, the namespace, the tombstone and the quota, in that order; see
    /// the API docs ("Namespaces", "No resurrection").
    #[tracing::instrument(skip_all)]
    pub fn create_session(
        &self,
        signed: SignedPolicy,
        request: &SignedRequest,
    ) -> Result<SessionSummary, ApiError> {
        // The approval first: an unsigned request is refused before its policy is parsed or
        // anything about it is logged.
        if request.header.is_none() {
            return Err(ApiError::SessionRefused {
                rule: "unauthorised",
                message: "creating a session needs the approval of an owner of its namespace: \
                          sign the request (Authorization: Cloister-Sig …) with a namespace \
                          owner's key (`cloister policy push --key`)"
                    .into(),
            });
        }
        let approver = self.authenticate(
            request.header.as_deref(),
            "POST",
            &request.path,
            &request.body,
        )?;
        // Until the approver is known to own the session's namespace, a refusal is answered
        // and not recorded: any key can sign a request, and none may write into the log.
        let parsed = Policy::parse(&signed.yaml)
            .map_err(|problems| ApiError::from_policy(cloister_policy::Error::Invalid(problems)))?;
        let name = parsed.name().to_owned();
        let Ok((ns, _)) = names::split_session(&name) else {
            return Err(ApiError::SessionRefused {
                rule: "name",
                message: "the session name must be `namespace/name`, each 1 to 63 of a-z 0-9 . _ -"
                    .into(),
            });
        };
        let refuse = |rule: &'static str, message: String| {
            self.record_session_refusal(
                Some(&name),
                rule,
                &format!("{message} (signer {approver})"),
            );
            ApiError::SessionRefused { rule, message }
        };
        let _guard = self
            .namespace_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(namespace) = self.store.namespace(ns)? else {
            return Err(ApiError::SessionRefused {
                rule: "namespace",
                message: format!(
                    "there is no namespace `{ns}`; the CAS operator creates it (`cloister \
                     namespace create {ns} --owner …`)"
                ),
            });
        };
        let Some(ns_owner) = namespace
            .owners
            .iter()
            .find(|o| KeyFingerprint::of_spki_der(&o.public_key) == approver)
        else {
            return Err(ApiError::SessionRefused {
                rule: "unauthorised",
                message: format!(
                    "the request is signed by key {approver}, which is not an owner of \
                     namespace `{ns}`"
                ),
            });
        };
        let tombstone = self.store.tombstone(&name)?;
        let decided = match &tombstone {
            None => authorize_create(&signed),
            Some(t) => authorize_recreate(&name, t.version, &t.hash, &signed),
        };
        let policy = decided.map_err(|e| {
            self.record_session_refusal(Some(&name), e.rule(), &first_line(&e.to_string()));
            ApiError::from_policy(e)
        })?;
        let held = self.sessions_in(ns)?;
        if held >= namespace.session_quota && self.store.session(&name)?.is_none() {
            return Err(refuse(
                "quota",
                format!(
                    "namespace `{ns}` holds {held} sessions, its quota; delete one or ask the \
                     operator to raise the quota"
                ),
            ));
        }
        let version = self.new_version(&policy, &signed);
        match self
            .store
            .append_session_version(&name, None, version.clone())
        {
            Ok(()) => {}
            Err(Error::Conflict { .. }) => {
                let message =
                    format!("session `{name}` exists; update it with PUT /v1/sessions/{name}");
                self.record_session_refusal(Some(&name), "exists", &message);
                return Err(ApiError::Conflict {
                    rule: Some("exists"),
                    message,
                });
            }
            Err(e) => return Err(e.into()),
        }
        let mut event = Event::new(EventKind::SessionCreated)
            .session(&name)
            .version(version.version)
            .session_hash(version.hash)
            .principal(owner_signers(&policy, &signed.signatures))
            .reason(format!(
                "approved-by: namespace owner `{}` {approver}",
                ns_owner.name
            ));
        if let Some(t) = &tombstone {
            event = event.reason(format!(
                "recreates: deleted version {} {}",
                t.version, t.hash
            ));
        }
        self.record(&event)?;
        tracing::info!(session = %name, hash = %version.hash, "session created");
        Ok(summary(&name, &version))
    }

    /// How many sessions namespace `ns` holds.
    pub(super) fn sessions_in(&self, ns: &str) -> Result<u64, ApiError> {
        let prefix = format!("{ns}/");
        Ok(self
            .store
            .session_names()?
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .count() as u64)
    }

    #[tracing::instrument(skip_all, fields(session = name))]
    pub fn update_session(
        &self,
        name: &str,
        signed: SignedPolicy,
    ) -> Result<SessionSummary, ApiError> {
        let (session, current) = self.current_or_404(name)?;
        let head = session.head().ok_or(ApiError::Internal)?;
        // Only a request a current owner signed learns why it is refused, and only its
        // refusal is recorded: the details name the head hash, the version and the owners.
        let by_owner = signed_by_an_owner(current.access(), &signed.hash(), &signed.signatures);
        let policy = authorize_update(&current, &head.hash, &signed).map_err(|e| {
            if by_owner {
                self.record_session_refusal(Some(name), e.rule(), &first_line(&e.to_string()));
                ApiError::from_policy(e)
            } else {
                refused_without_owner("update", e, signed.signatures.is_empty())
            }
        })?;
        let version = self.new_version(&policy, &signed);
        match self
            .store
            .append_session_version(name, Some(&head.hash), version.clone())
        {
            Ok(()) => {}
            Err(Error::Conflict { .. }) => {
                let message =
                    "another version was accepted first; sign an update of the current version"
                        .to_owned();
                self.record_session_refusal(Some(name), "predecessor", &message);
                return Err(ApiError::Conflict {
                    rule: Some("predecessor"),
                    message,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.record(
            &Event::new(EventKind::SessionUpdated)
                .session(name)
                .version(version.version)
                .session_hash(version.hash)
                .principal(owner_signers(&current, &signed.signatures)),
        )?;
        tracing::info!(hash = %version.hash, version = version.version, "session updated");
        Ok(summary(name, &version))
    }

    #[tracing::instrument(skip_all, fields(session = name))]
    pub fn delete_session(
        &self,
        name: &str,
        body: DeleteSession,
    ) -> Result<SessionSummary, ApiError> {
        // Under the lock session creation holds while it checks the tombstone and writes, so
        // a create racing this delete either sees the tombstone or fails as a conflict (a
        // replayed old version never slips in between the check and the delete).
        let _guard = self
            .namespace_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (session, current) = self.current_or_404(name)?;
        let head = session.head().ok_or(ApiError::Internal)?;
        let named: cloister_policy::SessionHash = body
            .head
            .parse()
            .map_err(|_| ApiError::BadRequest("`head` is not 64 hex digits".into()))?;
        let mut signatures = Vec::with_capacity(body.signatures.len());
        for s in &body.signatures {
            let key_fingerprint: KeyFingerprint = s.key_fingerprint.parse().map_err(|_| {
                ApiError::BadRequest("`key_fingerprint` is not 64 hex digits".into())
            })?;
            let sig: [u8; 64] = b64("sig", &s.sig)?
                .try_into()
                .map_err(|_| ApiError::BadRequest("`sig` is not 64 bytes".into()))?;
            signatures.push(cloister_policy::Signature {
                key_fingerprint,
                sig,
            });
        }
        let approved = api::deletion_hash(name, &named);
        let access = current.access();
        // As for an update: without a current owner's signature, the caller learns neither the
        // head nor the owners, and nothing is recorded.
        if !signed_by_an_owner(access, &approved, &signatures) {
            return Err(refused_without_owner(
                "deletion",
                cloister_policy::Error::Unsigned,
                signatures.is_empty(),
            ));
        }
        if named != head.hash {
            let message = format!(
                "the session's head is {}, the deletion names {named}",
                head.hash
            );
            self.record_session_refusal(Some(name), "predecessor", &message);
            return Err(ApiError::Conflict {
                rule: Some("predecessor"),
                message,
            });
        }
        let refuse = |rule: &'static str, message: String| {
            self.record_session_refusal(Some(name), rule, &message);
            ApiError::SessionRefused { rule, message }
        };
        let mut approvers = BTreeSet::new();
        for s in &signatures {
            let fp = s.key_fingerprint;
            if let Some(owner) = access.owner(&fp) {
                if !owner.key.verifies(&approved, &s.sig) {
                    return Err(refuse(
                        "bad-signature",
                        format!(
                            "the signature by owner `{}` does not verify over the deletion",
                            owner.name
                        ),
                    ));
                }
                approvers.insert(fp);
            }
        }
        if approvers.len() < access.approvals {
            return Err(refuse(
                "approvals",
                format!(
                    "{} of {} required owner approvals",
                    approvers.len(),
                    access.approvals
                ),
            ));
        }
        self.keep_audit_readers(name, &current)?;
        match self
            .store
            .delete_session(name, &head.hash, self.config.now())
        {
            Ok(_) => {}
            Err(Error::Conflict { .. }) => {
                return Err(ApiError::Conflict {
                    rule: Some("predecessor"),
                    message: "another version was accepted first".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let principals: Vec<String> = approvers.iter().map(ToString::to_string).collect();
        self.record(
            &Event::new(EventKind::SessionDeleted)
                .session(name)
                .version(head.version)
                .session_hash(head.hash)
                .principal(principals.join(","))
                .reason(format!(
                    "tombstone: re-creating needs version {} or above with predecessor {}",
                    head.version.saturating_add(1),
                    head.hash
                )),
        )?;
        tracing::info!("session deleted");
        Ok(summary(name, head))
    }

    pub fn read_session(
        &self,
        name: &str,
        principal: &KeyFingerprint,
    ) -> Result<SessionView, ApiError> {
        let (session, policy) = self.current_or_404(name)?;
        authorize_read(&policy, principal).map_err(ApiError::from_policy)?;
        let head = session.head().ok_or(ApiError::Internal)?;
        Ok(SessionView {
            name: session.name.clone(),
            version: head.version,
            hash: head.hash.to_string(),
            yaml: head.yaml.clone(),
            signatures: signatures_json(head),
            created: rfc3339(head.created),
            history: session
                .versions
                .iter()
                .map(|v| summary(&session.name, v))
                .collect(),
        })
    }

    pub fn list_sessions(&self, principal: &KeyFingerprint) -> Result<SessionList, ApiError> {
        let mut sessions = Vec::new();
        for name in self.store.session_names()? {
            let Some((session, policy)) = self.current(&name)? else {
                continue;
            };
            if let (Ok(()), Some(head)) = (authorize_read(&policy, principal), session.head()) {
                sessions.push(summary(&name, head));
            }
        }
        Ok(SessionList { sessions })
    }

    fn current_or_404(&self, name: &str) -> Result<(Session, Arc<Policy>), ApiError> {
        if names::split_session(name).is_err() {
            return Err(ApiError::NotFound(
                "no such session (names are `namespace/name`)".into(),
            ));
        }
        self.current(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no session `{name}`")))
    }

    fn new_version(&self, policy: &Policy, signed: &SignedPolicy) -> SessionVersion {
        SessionVersion {
            version: policy.version(),
            yaml: signed.yaml.clone(),
            signatures: signed
                .signatures
                .iter()
                .map(|s| SessionSignature {
                    signer: s.key_fingerprint.as_bytes().to_vec(),
                    signature: s.sig.to_vec(),
                })
                .collect(),
            hash: policy.hash(),
            created: self.config.now(),
        }
    }

    // ---- nonces -------------------------------------------------------------------------------

    pub fn nonce(&self) -> Result<NonceResponse, ApiError> {
        let now = self.config.now();
        // Stateless: nothing is stored, so issuing never runs out.
        let nonce = self.nonces.issue(now).map_err(|_| ApiError::Internal)?;
        Ok(NonceResponse {
            nonce: B64.encode(nonce),
            expires_at: unix(self.nonces.expires(now)),
        })
    }

    // ---- attestation --------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(
        session = tracing::field::Empty,
        service = tracing::field::Empty,
        evidence_len = req.evidence.len(),
        key_sha256 = tracing::field::Empty,
    ))]
    pub fn attest(&self, req: AttestRequest) -> Result<AttestResponse, ApiError> {
        // Names and sizes first: nothing unchecked reaches a log, the store or a verifier.
        check_attest_request(&req)?;
        let span = tracing::Span::current();
        span.record("session", req.session.as_str());
        span.record("service", req.service.as_str());
        let now = self.config.now();
        let evidence = b64("evidence", &req.evidence)?;
        let nonce = b64("nonce", &req.nonce)?;
        let spki = b64("public_key", &req.public_key)?;
        envelope::check_workload_spki(&spki)?;
        let principal = key_digest(&spki);
        span.record("key_sha256", principal.as_str());
        let (session, policy) = self.current_or_404(&req.session)?;
        let head = session.head().ok_or(ApiError::Internal)?;
        let refused = |failed: Vec<Failed>| self.refuse_attestation(&req, head, &principal, failed);
        if policy.service(&req.service).is_none() {
            return Err(refused(vec![Failed::withheld(
                UNKNOWN_SERVICE_RULE.to_owned(),
                format!("the session has no service `{}`", req.service),
            )]));
        }

        let expected = binding::report_data(&nonce, &spki);
        let mut failed = Vec::new();
        let claims = match self.verify_evidence(&evidence, &req, now, &expected)? {
            Ok(claims) => Some(claims),
            Err(failure) => {
                failed.push(failure);
                None
            }
        };
        // The nonce is spent only by evidence that verified (and so commits to it through its
        // report data): junk evidence cannot fill the set of used nonces, which every honest
        // workload needs room in.
        if claims.is_some() {
            match self.nonces.take(&nonce, now) {
                Ok(()) => {}
                Err(TakeError::Full) => {
                    return Err(ApiError::Unavailable(
                        "too many recent attestations to remember their nonces; retry shortly"
                            .into(),
                    ));
                }
                Err(TakeError::Rejected(NonceRejection::Expired)) => {
                    failed.push(Failed::caller(
                        "nonce",
                        "expired; get a fresh one from POST /v1/nonce",
                    ));
                }
                Err(TakeError::Rejected(_)) => {
                    failed.push(Failed::caller(
                        "nonce",
                        "unknown or already used (nonces are single use)",
                    ));
                }
            }
        }
        if let Some(Err(refusal)) = claims.as_ref().map(|c| policy.appraise(&req.service, c)) {
            failed.extend(refusal.reasons.into_iter().map(Failed::policy));
        }
        let (Some(claims), true) = (claims, failed.is_empty()) else {
            return Err(refused(failed));
        };
        let service = policy.service(&req.service).ok_or(ApiError::Internal)?;

        let source = |name: &str| -> Result<Option<Arc<Policy>>, Error> {
            Ok(self.current(name)?.map(|(_, p)| p))
        };
        let secrets =
            Secrets::new(&*self.store, &self.config, &source, now).with_ca_cache(&self.session_cas);
        let resolved: Resolved = match secrets.resolve(&policy, service, &req.host_args) {
            Ok(r) => r,
            Err(Error::ImportRefused {
                secret,
                rule,
                message,
            }) => {
                return Err(refused(vec![Failed::import(&secret, rule, &message)]));
            }
            Err(e) => return Err(e.into()),
        };
        let (ca, ca_name) = secrets.session_ca(&policy)?;
        let sans = workload_sans(&policy, &req.service, ca_name.as_deref());
        let cert = ca.issue(&spki, &req.service, &sans, now, self.config.cert_validity())?;

        let iat = unix(now);
        let mut exp = iat + self.config.token_validity().as_secs();
        if let Some(e) = claims.expires_at {
            exp = exp.min(e.max(iat + 1));
        }
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| ApiError::Internal)?;
        let token = self.token.issue(&AttestationClaims {
            iss: self.config.issuer().to_owned(),
            sub: format!("{}/{}", req.session, req.service),
            aud: crate::token::audience(&req.session, &req.service),
            iat,
            nbf: iat,
            exp,
            jti: hex::encode(jti),
            session: req.session.clone(),
            service: req.service.clone(),
            session_hash: head.hash.to_string(),
            tee: claims.tee.as_str().to_owned(),
            measurement: hex::encode(&claims.measurement),
            tcb_status: claims.tcb_status.as_str().to_owned(),
            debug: claims.debug,
            key_hash: principal.clone(),
        })?;

        let plaintext = sealed_config(
            &req.session,
            &req.service,
            &head.hash.to_string(),
            &resolved,
        )?;
        let sealed = envelope::seal(
            &spki,
            &plaintext,
            &api::config_aad(&req.session, &req.service, &nonce),
        )?;

        let base = |kind| {
            Event::new(kind)
                .session(&req.session)
                .version(head.version)
                .session_hash(head.hash)
                .service(&req.service)
                .principal(&principal)
        };
        // One batch: the entries are adjacent in the log and cost one round of `fsync`s.
        let mut events = vec![base(EventKind::AttestationPassed)];
        for (session, name) in secrets.generated() {
            events.push(
                Event::new(EventKind::SecretGenerated)
                    .session(session)
                    .released(name),
            );
        }
        let mut released = base(EventKind::SecretReleased)
            .released("certificate")
            .released("configuration");
        for name in &resolved.released {
            released = released.released(format!("secret:{name}"));
        }
        events.push(released);
        self.record_all(&events)?;
        tracing::info!(
            tee = %claims.tee,
            secrets = resolved.released.len(),
            config_len = plaintext.len(),
            "attestation passed"
        );
        Ok(AttestResponse {
            token,
            certificate_pem: cert.pem,
            ca_pem: ca.cert_pem().to_owned(),
            session_hash: head.hash.to_string(),
            expires_at: exp,
            config: sealed,
        })
    }

    /// Refuses an attestation: appends the details to the audit log (or counts a repeat, see
    /// `refusals.rs`) and answers with the rule ids and the entry's `seq`.
    fn refuse_attestation(
        &self,
        req: &AttestRequest,
        head: &SessionVersion,
        principal: &str,
        failed: Vec<Failed>,
    ) -> ApiError {
        let rules = rule_ids(&failed);
        let reasons: Vec<String> = failed
            .iter()
            .filter(|f| f.caller_own)
            .map(|f| audit::cap_reason(f.reason.clone()))
            .collect();
        tracing::info!(rules = ?rules, "attestation refused");
        let unknown_service = rules.iter().any(|r| r == UNKNOWN_SERVICE_RULE);
        let key = Key {
            session: req.session.clone(),
            session_hash: *head.hash.as_bytes(),
            service: (!unknown_service).then(|| req.service.clone()),
            rules: rules.clone(),
        };
        let now = self.config.now();
        let (decision, mut batch) = self.refusals.refused(&key, head.version, principal, now);
        let audit_seq = match decision {
            Decision::Folded(seq) => {
                if let Err(e) = self.append_batch(&batch, now) {
                    return e;
                }
                seq
            }
            Decision::Append => {
                let mut event = Event::new(EventKind::AttestationRefused)
                    .session(&req.session)
                    .version(head.version)
                    .session_hash(head.hash)
                    .service(&req.service)
                    .principal(principal);
                for f in &failed {
                    event = event.reason(&f.reason);
                }
                batch.push(event);
                match self.append_batch(&batch, now) {
                    Ok(receipts) => {
                        let seq = receipts.last().map(|r| r.seq);
                        if let Some(seq) = seq {
                            self.refusals.appended(&key, seq);
                        }
                        seq
                    }
                    Err(e) => {
                        self.refusals.forget(&key);
                        return e;
                    }
                }
            }
        };
        ApiError::AttestationRefused {
            rules,
            reasons,
            audit_seq,
        }
    }

    /// Verifies evidence with the CAS's trust set ([`cloister_attest::Verifiers`]).
    /// `Ok(Err(failure))` is a refusal, by the rule `collateral` when what came with the evidence
    /// is missing or unusable, else `evidence`; `Err` an internal failure.
    fn verify_evidence(
        &self,
        evidence: &[u8],
        req: &AttestRequest,
        now: SystemTime,
        expected: &[u8; 64],
    ) -> Result<Result<Claims, Failed>, ApiError> {
        let Some(kind) = req.kind.or_else(|| cloister_attest::detect(evidence)) else {
            return Ok(Err(Failed::caller(
                "evidence",
                "unknown format; name it with `kind`",
            )));
        };
        let collateral = match req
            .collateral
            .as_ref()
            .map(|c| Collateral::from_json(kind, c))
        {
            None => None,
            Some(Ok(c)) => c,
            Some(Err(e)) if e.fault() == Fault::Internal => {
                tracing::error!(error = %e, "collateral parser bug");
                return Err(ApiError::Internal);
            }
            Some(Err(e)) => return Ok(Err(Failed::caller("collateral", e))),
        };
        let ctx = Context::new(now).expect_report_data(expected);
        match self
            .verifiers
            .verify(evidence, Some(kind), collateral.as_ref(), &ctx)
        {
            Ok(verified) => Ok(Ok(verified.into_claims())),
            Err(e) if e.fault() == Fault::Internal => {
                tracing::error!(error = %e, "verifier bug");
                Err(ApiError::Internal)
            }
            Err(e @ AttestError::MissingCollateral { .. }) => {
                Ok(Err(Failed::caller("collateral", e)))
            }
            Err(e) => Ok(Err(Failed::caller("evidence", e))),
        }
    }

    // ---- audit --------------------------------------------------------------------------------

    pub fn audit_head(&self) -> Result<AuditHead, ApiError> {
        #[derive(serde::Deserialize)]
        struct Head {
            seq: u64,
            hash: String,
            signature: String,
        }
        let path = self.dir.join(audit::HEAD_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let head: Head = serde_json::from_slice(&bytes).map_err(|_| {
            tracing::error!("the audit head does not parse");
            ApiError::Internal
        })?;
        Ok(AuditHead {
            seq: head.seq,
            hash: head.hash,
            signature: head.signature,
            public_key: self.audit.public_key().to_hex(),
        })
    }

    /// Whether `principal` is the configured auditor.
    fn is_auditor(&self, principal: &KeyFingerprint) -> bool {
        self.config.auditor() == Some(principal)
    }

    /// Whether `principal` may read the audit entries of session `name`: an owner or reader of
    /// its current policy or, for a deleted session, of its last version.
    fn may_read_audit_of(&self, name: &str, principal: &KeyFingerprint) -> Result<bool, ApiError> {
        if name.is_empty() || name.len() > crate::store::MAX_NAME_LEN {
            return Ok(false);
        }
        if let Some((_, policy)) = self.current(name)? {
            return Ok(authorize_read(&policy, principal).is_ok());
        }
        let Some(record) = self.store.kv_get(AUDIT_READERS_KV, name)? else {
            return Ok(false);
        };
        let readers: Vec<String> =
            serde_json::from_slice(record.value.expose_secret()).map_err(|_| {
                tracing::error!(
                    session = name,
                    "a deleted session's audit readers do not parse"
                );
                ApiError::Internal
            })?;
        let principal = principal.to_string();
        Ok(readers.contains(&principal))
    }

    /// Keeps who may read a session's audit entries once it is deleted: the owners and readers
    /// of its last version (written before the deletion, so that there is no moment without).
    fn keep_audit_readers(&self, name: &str, policy: &Policy) -> Result<(), ApiError> {
        let access = policy.access();
        let readers: BTreeSet<String> = access
            .owners
            .iter()
            .map(|o| o.key.fingerprint().to_string())
            .chain(access.readers.iter().map(|r| r.fingerprint.to_string()))
            .collect();
        let json = serde_json::to_vec(&readers).map_err(|_| ApiError::Internal)?;
        self.store
            .kv_put(AUDIT_READERS_KV, name, &json, crate::store::Expect::Any)?;
        Ok(())
    }

    /// `GET /v1/audit/entries` for `principal` (authenticated): the auditor reads every entry,
    /// anyone else the entries of the sessions they may read (see [`crate::api`]).
    pub fn audit_entries(
        &self,
        principal: &KeyFingerprint,
        query: &AuditEntriesQuery,
    ) -> Result<AuditEntries, ApiError> {
        let limit = query
            .limit
            .unwrap_or(api::MAX_AUDIT_ENTRIES)
            .clamp(1, api::MAX_AUDIT_ENTRIES);
        let auditor = self.is_auditor(principal);
        if let Some(session) = &query.session
            && !auditor
            && !self.may_read_audit_of(session, principal)?
        {
            return Err(audit_read_denied(
                "only the session's owners and readers, or the auditor, read its audit entries",
            ));
        }
        // Decisions per session name, for this read only (bounded by the entries it scans).
        let mut allowed: HashMap<String, bool> = HashMap::new();
        let mut failure = None;
        let page = self
            .audit
            .read(
                query.after,
                limit,
                self.config.audit_scan_bytes(),
                |entry| {
                    if let Some(only) = &query.session
                        && entry.session.as_ref() != Some(only)
                    {
                        return false;
                    }
                    if auditor {
                        return true;
                    }
                    // CAS-level entries (no session) are the auditor's only.
                    let Some(name) = &entry.session else {
                        return false;
                    };
                    if let Some(decision) = allowed.get(name) {
                        return *decision;
                    }
                    match self.may_read_audit_of(name, principal) {
                        Ok(decision) => {
                            allowed.insert(name.clone(), decision);
                            decision
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                            false
                        }
                    }
                },
            )
            .map_err(|e| {
                tracing::error!(error = %e, "audit log unreadable");
                ApiError::Unavailable("the audit log is unreadable".into())
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(AuditEntries {
            entries: page.entries,
            more: page.next.is_some(),
            next: page.next,
        })
    }

    /// `GET /v1/audit/verify`, for the auditor only: checks the entries appended since the
    /// previous check (see [`crate::audit::AuditLog::verify`]).
    pub fn audit_verify(&self, principal: &KeyFingerprint) -> Result<AuditVerification, ApiError> {
        if !self.is_auditor(principal) {
            return Err(audit_read_denied(
                "only the auditor key asks the CAS to verify its audit log",
            ));
        }
        match self.audit.verify() {
            Ok(s) => Ok(AuditVerification {
                ok: true,
                entries: s.entries,
                head_seq: s.head_seq,
                last_hash: s.last_hash,
                failure: None,
                exit_code: None,
            }),
            Err(e @ AuditError::Io { .. }) => {
                tracing::error!(error = %e, "audit log unreadable");
                Err(ApiError::Unavailable("the audit log is unreadable".into()))
            }
            Err(e) => Ok(AuditVerification {
                ok: false,
                entries: 0,
                head_seq: 0,
                last_hash: String::new(),
                failure: Some(e.to_string()),
                exit_code: Some(e.exit_code()),
            }),
        }
    }
}

/// The kv namespace holding, per deleted session, who may still read its audit entries.
const AUDIT_READERS_KV: &str = "audit-readers";

fn audit_read_denied(message: &str) -> ApiError {
    ApiError::Forbidden {
        rule: "audit-read",
        message: message.to_owned(),
    }
}

/// The SANs of a workload certificate: the service name, and the SANs of the policy's `x509`
/// secrets issued by the session CA whose common name is the service.
fn workload_sans(policy: &Policy, service: &str, ca_name: Option<&str>) -> Vec<String> {
    let mut sans = vec![service.to_owned()];
    for s in policy.secrets() {
        if let SecretKind::X509 {
            issuer,
            common_name,
            sans: more,
            ..
        } = &s.kind
            && Some(issuer.as_str()) == ca_name
            && common_name == service
        {
            for san in more {
                if !sans.contains(san) {
                    sans.push(san.clone());
                }
            }
        }
    }
    sans
}

/// The JSON the workload opens, in memory that is wiped afterwards.
fn sealed_config(
    session: &str,
    service: &str,
    session_hash: &str,
    resolved: &Resolved,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let r = &resolved.service;
    let config = SealedConfig::<&str> {
        session: session.to_owned(),
        service: service.to_owned(),
        session_hash: session_hash.to_owned(),
        command: r.command.as_ref().map(|c| c.expose_secret()),
        args: r.args.iter().map(|a| a.expose_secret()).collect(),
        env: r
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret()))
            .collect(),
        files: r
            .files
            .iter()
            .map(|f| SealedFile {
                path: f.path.to_string_lossy().into_owned(),
                content: f.content.expose_secret(),
                mode: f.mode,
            })
            .collect(),
    };
    let size: usize = config.command.map_or(0, str::len)
        + config.args.iter().map(|a| a.len()).sum::<usize>()
        + config
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + config
            .files
            .iter()
            .map(|f| f.path.len() + f.content.len())
            .sum::<usize>();
    // Twice the size leaves room for JSON escapes (PEM newlines become `\n`), so the buffer is
    // not reallocated and no copy of a secret is left behind.
    let mut out = Zeroizing::new(Vec::with_capacity(2 * size + 4096));
    serde_json::to_writer(&mut *out, &config).map_err(|_| ApiError::Internal)?;
    Ok(out)
}

/// Checks an attestation request's names and sizes before anything is looked up or logged
/// (see [`AttestRequest`]).
fn check_attest_request(req: &AttestRequest) -> Result<(), ApiError> {
    names::check_session_name(&req.session)
        .map_err(|e| ApiError::BadRequest(format!("`session` {e}")))?;
    names::check_service_name(&req.service)
        .map_err(|e| ApiError::BadRequest(format!("`service` {e}")))?;
    // Base64 of the largest evidence, with room for padding and surrounding whitespace.
    if req.evidence.len() > api::MAX_EVIDENCE_BYTES.div_ceil(3) * 4 + 4 {
        return Err(ApiError::BadRequest(format!(
            "`evidence` is larger than {} KiB",
            api::MAX_EVIDENCE_BYTES / 1024
        )));
    }
    if req.host_args.len() > api::MAX_HOST_ARGS
        || req
            .host_args
            .iter()
            .any(|a| a.len() > api::MAX_HOST_ARG_BYTES)
    {
        return Err(ApiError::BadRequest(format!(
            "`host_args`: at most {} arguments of at most {} bytes each",
            api::MAX_HOST_ARGS,
            api::MAX_HOST_ARG_BYTES
        )));
    }
    Ok(())
}

/// The answer to a session change (`what`: "update", "deletion") that no current owner of the
/// session signed. It names the rule that refuses it whatever the session holds — `unsigned`,
/// or `approvals` (no owner approved it) — and says nothing else of the session: not the head
/// hash a `predecessor` refusal would name, not the `version`, not which keys are owners (a
/// `bad-signature` refusal names one). Failures of the caller's own document (invalid, or
/// naming another session) are answered in full: they hold only what it sent.
fn refused_without_owner(what: &str, e: cloister_policy::Error, unsigned: bool) -> ApiError {
    use cloister_policy::Error as P;
    match e {
        P::Invalid(_) | P::NameMismatch { .. } => ApiError::from_policy(e),
        _ if unsigned => ApiError::SessionRefused {
            rule: "unsigned",
            message: format!(
                "the {what} is not signed; it needs the signatures of the session's owners"
            ),
        },
        _ => ApiError::SessionRefused {
            rule: "approvals",
            message: format!(
                "no owner of the session's current version signed this {what}; the CAS tells \
                 only its owners why else a change is refused"
            ),
        },
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}
