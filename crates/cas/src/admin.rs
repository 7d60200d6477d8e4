//! The operator's admin key and the namespaces it governs, outside the HTTP API: what
//! `cloister cas init --admin-key` does.
//!
//! [`init_admin`] records the admin key in the store (sealed like everything else) and, for a
//! store made before namespaces existed, creates a namespace record for every namespace that
//! already has sessions, owned by the owners of those sessions' current policies — so that
//! whoever could update those sessions before can still create sessions beside them, and
//! nobody else can. Every step is audited.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use ed25519_dalek::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};

use crate::api::DEFAULT_SESSION_QUOTA;
use crate::audit::{AuditLog, AuditSigner, Event, EventKind, key_digest};
use crate::{Error, FileStore, MasterKey, Namespace, NamespaceOwner, Store};

/// What [`init_admin`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminInit {
    /// SHA-256 of the admin key's SPKI DER, hex.
    pub fingerprint: String,
    /// Whether another admin key was replaced.
    pub replaced: bool,
    /// Whether the key was already the admin key (nothing changed but the migration).
    pub unchanged: bool,
    /// The namespaces created for existing sessions, with how many sessions each holds.
    pub migrated: Vec<(String, usize)>,
}

/// Checks that `spki_der` is an Ed25519 public key (not a weak one) and returns its canonical
/// DER.
pub fn parse_admin_key(spki_der: &[u8]) -> Result<Vec<u8>, Error> {
    let key = ed25519_dalek::VerifyingKey::from_public_key_der(spki_der)
        .map_err(|_| Error::invalid("admin key", "not an Ed25519 SubjectPublicKeyInfo"))?;
    if key.is_weak() {
        return Err(Error::invalid(
            "admin key",
            "a weak (small-order) Ed25519 key",
        ));
    }
    Ok(key
        .to_public_key_der()
        .map_err(|_| Error::Internal("SPKI encoding of an Ed25519 key failed"))?
        .into_vec())
}

/// Opens the store and audit log in `dir` under `master` and runs [`init_admin`] on them.
pub fn init_admin_in(
    dir: &Path,
    master: &MasterKey,
    admin_spki_der: &[u8],
    now: SystemTime,
) -> Result<AdminInit, Error> {
    let store = FileStore::open(dir, master)?;
    let audit = AuditLog::open(dir, AuditSigner::from_master_key(master)?)?;
    init_admin(&store, &audit, admin_spki_der, now)
}

/// Sets the admin key and creates the namespace records that existing sessions need (see the
/// [module docs](self)).
pub fn init_admin(
    store: &dyn Store,
    audit: &AuditLog,
    admin_spki_der: &[u8],
    now: SystemTime,
) -> Result<AdminInit, Error> {
    let der = parse_admin_key(admin_spki_der)?;
    let fingerprint = key_digest(&der);
    let previous = store.admin_key()?;
    let unchanged = previous.as_deref() == Some(der.as_slice());
    if !unchanged {
        store.set_admin_key(&der)?;
        let mut event = Event::new(EventKind::AdminKeySet).principal(&fingerprint);
        if let Some(old) = &previous {
            event = event.reason(format!("replaces: {}", key_digest(old)));
        }
        audit.append_at(&event, now)?;
        tracing::info!(admin_key = %fingerprint, "admin key set");
    }
    let migrated = migrate_namespaces(store, audit, now)?;
    Ok(AdminInit {
        fingerprint,
        replaced: previous.is_some() && !unchanged,
        unchanged,
        migrated,
    })
}

/// Creates a namespace record for each namespace that has sessions but no record.
fn migrate_namespaces(
    store: &dyn Store,
    audit: &AuditLog,
    now: SystemTime,
) -> Result<Vec<(String, usize)>, Error> {
    // namespace → (owner fingerprint → owner), session count
    let mut found: BTreeMap<String, (BTreeMap<String, NamespaceOwner>, usize)> = BTreeMap::new();
    for name in store.session_names()? {
        let Some((ns, _)) = name.split_once('/') else {
            continue;
        };
        if store.namespace(ns)?.is_some() {
            continue;
        }
        let Some(session) = store.session(&name)? else {
            continue;
        };
        let Some(head) = session.head() else {
            continue;
        };
        let policy = cloister_policy::Policy::parse(&head.yaml)
            .map_err(|_| Error::Internal("a stored policy no longer validates"))?;
        let entry = found.entry(ns.to_owned()).or_default();
        entry.1 += 1;
        for owner in &policy.access().owners {
            let der = owner_der(&owner.key)?;
            entry
                .0
                .entry(owner.key.fingerprint().to_string())
                .or_insert(NamespaceOwner {
                    name: owner.name.clone(),
                    public_key: der,
                });
        }
    }
    let mut migrated = Vec::new();
    for (ns, (owners, count)) in found {
        let fingerprints: BTreeSet<&String> = owners.keys().collect();
        let namespace = Namespace {
            name: ns.clone(),
            owners: owners.values().cloned().collect(),
            session_quota: DEFAULT_SESSION_QUOTA.max(count as u64),
            version: 1,
            created: now,
            updated: now,
        };
        match store.put_namespace(namespace, None) {
            Ok(()) => {}
            // Created meanwhile: nothing to migrate.
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
        audit.append_at(
            &Event::new(EventKind::NamespaceCreated)
                .principal("migration")
                .reason(format!("namespace: {ns}"))
                .reason(format!(
                    "owners: {}",
                    fingerprints
                        .into_iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(",")
                ))
                .reason(format!("migrated: {count} existing sessions")),
            now,
        )?;
        tracing::info!(namespace = %ns, sessions = count, "namespace created for existing sessions");
        migrated.push((ns, count));
    }
    Ok(migrated)
}

/// The SPKI DER of a policy owner's key.
pub fn owner_der(key: &cloister_policy::PublicKey) -> Result<Vec<u8>, Error> {
    let pem_text = key.to_pem()?;
    let parsed = pem::parse(pem_text)
        .map_err(|_| Error::Internal("a public key's PEM does not parse back"))?;
    Ok(parsed.contents().to_vec())
}
