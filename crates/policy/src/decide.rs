//! The CAS's decisions about policies, as pure functions: create, update, read, import.

use crate::Error;
use crate::model::{Access, Policy, SessionImport};
use crate::sign::{KeyFingerprint, SessionHash, SignedPolicy};
use std::collections::BTreeSet;

/// Accept a new policy: it validates, is version 1 without predecessor, and carries valid
/// signatures of at least `access.update.approvals` distinct owners named in it.
pub fn authorize_create(signed: &SignedPolicy) -> Result<Policy, Error> {
    let policy = Policy::parse(&signed.yaml).map_err(Error::Invalid)?;
    if policy.version() != 1 {
        return Err(Error::WrongVersion {
            expected: 1,
            got: policy.version(),
        });
    }
    // Validation already refuses a predecessor on version 1.
    check_approvals(policy.access(), &policy.hash(), signed)?;
    Ok(policy)
}

/// Accept `new` as the successor of `current` (whose session hash is `current_hash`): same
/// name, the next version, `predecessor == current_hash`, and valid signatures of at least M
/// distinct owners of the **current** version (M = the current `access.update.approvals`), so a
/// new version cannot appoint its own approvers.
pub fn authorize_update(
    current: &Policy,
    current_hash: &SessionHash,
    new: &SignedPolicy,
) -> Result<Policy, Error> {
    let policy = Policy::parse(&new.yaml).map_err(Error::Invalid)?;
    if policy.name() != current.name() {
        return Err(Error::NameMismatch {
            expected: current.name().to_owned(),
            got: policy.name().to_owned(),
        });
    }
    let next = current.version().saturating_add(1);
    if policy.version() != next {
        return Err(Error::WrongVersion {
            expected: next,
            got: policy.version(),
        });
    }
    if policy.predecessor() != Some(*current_hash) {
        return Err(Error::StalePredecessor {
            expected: *current_hash,
            got: policy.predecessor(),
        });
    }
    check_approvals(current.access(), &policy.hash(), new)?;
    Ok(policy)
}

/// Count valid signatures over `hash` by distinct owners in `access`.
///
/// A signature naming an owner's key that does not verify is an error of its own
/// ([`Error::BadSignature`]): it is tampering or a mistake, never noise. Signatures by keys that
/// are not owners are not counted and are listed in [`Error::InsufficientApprovals`].
fn check_approvals(
    access: &Access,
    hash: &SessionHash,
    signed: &SignedPolicy,
) -> Result<(), Error> {
    if signed.signatures.is_empty() {
        return Err(Error::Unsigned);
    }
    let mut approvers: BTreeSet<KeyFingerprint> = BTreeSet::new();
    let mut ignored = Vec::new();
    for sig in &signed.signatures {
        match access.owner(&sig.key_fingerprint) {
            None => ignored.push(format!("key {} is not an owner", sig.key_fingerprint)),
            Some(owner) => {
                if !owner.key.verifies(hash, &sig.sig) {
                    return Err(Error::BadSignature {
                        owner: owner.name.clone(),
                        hash: *hash,
                    });
                }
                if !approvers.insert(sig.key_fingerprint) {
                    ignored.push(format!("owner {} signed twice", owner.name));
                }
            }
        }
    }
    if approvers.len() < access.approvals {
        return Err(Error::InsufficientApprovals {
            have: approvers.len(),
            need: access.approvals,
            ignored,
        });
    }
    Ok(())
}

/// May the principal whose key has `principal` read `policy`? Owners and `access.read`
/// principals may; nobody else.
pub fn authorize_read(policy: &Policy, principal: &KeyFingerprint) -> Result<(), Error> {
    let access = policy.access();
    if access.owner(principal).is_some()
        || access.readers.iter().any(|r| r.fingerprint == *principal)
    {
        Ok(())
    } else {
        Err(Error::ReadDenied {
            policy: policy.name().to_owned(),
            principal: *principal,
        })
    }
}

/// May `importer` import `import` (one of its [`Policy::session_imports`]) from `exporter`,
/// whose current session hash is `exporter_hash`? The import must name the exporter, pin its
/// current hash, and the exporter's `export` must list the secret for the importer's name.
pub fn authorize_import(
    importer: &Policy,
    import: &SessionImport,
    exporter: &Policy,
    exporter_hash: &SessionHash,
) -> Result<(), Error> {
    if import.session != exporter.name() {
        return Err(Error::ImportWrongSession {
            expected: import.session.clone(),
            got: exporter.name().to_owned(),
        });
    }
    if import.session_hash != *exporter_hash {
        return Err(Error::ImportHashMismatch {
            pinned: import.session_hash,
            current: *exporter_hash,
        });
    }
    let exported = exporter
        .exports()
        .iter()
        .any(|e| e.secret == import.secret && e.to.iter().any(|to| to == importer.name()));
    if !exported {
        return Err(Error::ImportNotExported {
            exporter: exporter.name().to_owned(),
            secret: import.secret.clone(),
            importer: importer.name().to_owned(),
        });
    }
    Ok(())
}
