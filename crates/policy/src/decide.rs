//! The CAS's decisions about policies, as pure functions: create, update, read, import.

use crate::Error;
use crate::model::{Access, ImporterIdentity, Policy, SessionImport};
use crate::sign::{KeyFingerprint, SessionHash, Signature, SignedPolicy};
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

/// Accept a policy re-creating a deleted session whose last version was `version` with hash
/// `hash` (its tombstone): its version must be above `version` and its `predecessor` must be
/// `hash`, so its owners signed a document naming the deletion (an old signed policy, replayed,
/// cannot qualify); and it carries valid signatures of at least M distinct owners named in it.
/// The CAS asks a fresh approval of the namespace's owner besides.
pub fn authorize_recreate(
    name: &str,
    version: u64,
    hash: &SessionHash,
    signed: &SignedPolicy,
) -> Result<Policy, Error> {
    let policy = Policy::parse(&signed.yaml).map_err(Error::Invalid)?;
    if policy.name() != name {
        return Err(Error::NameMismatch {
            expected: name.to_owned(),
            got: policy.name().to_owned(),
        });
    }
    if policy.version() <= version || policy.predecessor() != Some(*hash) {
        return Err(Error::Resurrection {
            name: name.to_owned(),
            version,
            hash: *hash,
            got_version: policy.version(),
            got_predecessor: policy.predecessor(),
        });
    }
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
    // The predecessor first: an update written against an older version (a lost race with a
    // concurrent update) is stale, whatever version number it claims.
    if policy.predecessor() != Some(*current_hash) {
        return Err(Error::StalePredecessor {
            expected: *current_hash,
            got: policy.predecessor(),
        });
    }
    let next = current.version().saturating_add(1);
    if policy.version() != next {
        return Err(Error::WrongVersion {
            expected: next,
            got: policy.version(),
        });
    }
    check_approvals(current.access(), &policy.hash(), new)?;
    Ok(policy)
}

/// Whether at least one of `signatures` is a valid signature over `hash` by an owner named in
/// `access`.
///
/// The CAS gives the details of a refused change (the current head hash, version, which keys
/// are owners) only to a request that passes this test against the session's *current* owners:
/// they may read the session anyway. Anyone else learns the rule id and nothing about the
/// session's policy (see the threat model, "What each refusal reveals").
pub fn signed_by_an_owner(access: &Access, hash: &SessionHash, signatures: &[Signature]) -> bool {
    signatures.iter().any(|sig| {
        access
            .owner(&sig.key_fingerprint)
            .is_some_and(|owner| owner.key.verifies(hash, &sig.sig))
    })
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

/// What the CAS knows of an importing session's identity, beyond its name.
#[derive(Clone, Copy, Debug)]
pub struct Importer<'a> {
    policy: &'a Policy,
    history: &'a [SessionHash],
    namespace_owners: &'a BTreeSet<KeyFingerprint>,
}

impl<'a> Importer<'a> {
    /// The importing session in force, `policy`; the hashes of all its versions (`history`,
    /// the current one included); and the key fingerprints of its namespace's owners.
    pub fn new(
        policy: &'a Policy,
        history: &'a [SessionHash],
        namespace_owners: &'a BTreeSet<KeyFingerprint>,
    ) -> Self {
        Self {
            policy,
            history,
            namespace_owners,
        }
    }

    /// Whether this session is the one `identity` names.
    fn is(&self, identity: &ImporterIdentity) -> bool {
        match identity {
            ImporterIdentity::SessionHash(pin) => {
                self.policy.hash() == *pin || self.history.contains(pin)
            }
            ImporterIdentity::Owners(named) => {
                !self.namespace_owners.is_empty() && self.namespace_owners.is_subset(named)
            }
        }
    }
}

/// May `importer` import `import` (one of its [`Policy::session_imports`]) from `exporter`,
/// whose current session hash is `exporter_hash`? The import must name the exporter; the
/// exporter's `export` must list the secret for the importer's name
/// ([`Error::ImportNotExported`]) *and* identity ([`Error::ExportIdentity`]): a version of the
/// importer whose hash it pins, or the owners of the importer's namespace, every one of them
/// named. A session created under the importer's name by someone else gets nothing. Last, the
/// import must pin the exporter's current hash ([`Error::ImportHashMismatch`], which names it):
/// checked only for an importer the export is for, so no other session learns that hash.
pub fn authorize_import(
    importer: &Importer<'_>,
    import: &SessionImport,
    exporter: &Policy,
    exporter_hash: &SessionHash,
) -> Result<(), Error> {
    let name = importer.policy.name();
    if import.session != exporter.name() {
        return Err(Error::ImportWrongSession {
            expected: import.session.clone(),
            got: exporter.name().to_owned(),
        });
    }
    let mut targets = exporter
        .exports()
        .iter()
        .filter(|e| e.secret == import.secret)
        .flat_map(|e| &e.to)
        .filter(|to| to.session == name)
        .peekable();
    if targets.peek().is_none() {
        return Err(Error::ImportNotExported {
            exporter: exporter.name().to_owned(),
            secret: import.secret.clone(),
            importer: name.to_owned(),
        });
    }
    if !targets.any(|to| importer.is(&to.identity)) {
        return Err(Error::ExportIdentity {
            exporter: exporter.name().to_owned(),
            secret: import.secret.clone(),
            importer: name.to_owned(),
        });
    }
    // Only now the exporter's current hash: an importer the export does not name learns nothing
    // of it (not even through its own audit entries, which carry this refusal's detail).
    if import.session_hash != *exporter_hash {
        return Err(Error::ImportHashMismatch {
            pinned: import.session_hash,
            current: *exporter_hash,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{MEASUREMENT, key, policy, public_b64, signed};
    use rstest::rstest;

    /// What a decision came to, for matching in matrices.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Ok,
        Unsigned,
        Approvals(usize, usize),
        BadSignature(&'static str),
        Stale,
        Version(u64, u64),
        Name,
        Invalid,
    }

    fn outcome(r: Result<Policy, Error>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(Error::Unsigned) => Outcome::Unsigned,
            Err(Error::InsufficientApprovals { have, need, .. }) => Outcome::Approvals(have, need),
            Err(Error::BadSignature { owner, .. }) => Outcome::BadSignature(match owner.as_str() {
                "owner1" => "owner1",
                "owner2" => "owner2",
                _ => "other",
            }),
            Err(Error::StalePredecessor { .. }) => Outcome::Stale,
            Err(Error::WrongVersion { expected, got }) => Outcome::Version(expected, got),
            Err(Error::NameMismatch { .. }) => Outcome::Name,
            Err(Error::Invalid(_)) => Outcome::Invalid,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[rstest]
    #[case::signed_by_the_owner(&[1], 1, &[1], Outcome::Ok)]
    #[case::unsigned(&[1], 1, &[], Outcome::Unsigned)]
    #[case::signed_by_a_non_owner(&[1], 1, &[3], Outcome::Approvals(0, 1))]
    #[case::one_of_two_required(&[1, 2], 2, &[2], Outcome::Approvals(1, 2))]
    #[case::two_of_two(&[1, 2], 2, &[2, 1], Outcome::Ok)]
    #[case::one_of_two_owners_is_enough_when_m_is_1(&[1, 2], 1, &[2], Outcome::Ok)]
    fn create(
        #[case] owners: &[u8],
        #[case] approvals: usize,
        #[case] signers: &[u8],
        #[case] expected: Outcome,
    ) {
        let yaml = policy("test/p", 1, None, owners, approvals, &[]);
        assert_eq!(outcome(authorize_create(&signed(&yaml, signers))), expected);
    }

    #[test]
    fn create_refuses_a_later_version_and_invalid_documents() {
        let v2 = policy("test/p", 2, Some(SessionHash::of("x")), &[1], 1, &[]);
        assert_eq!(
            outcome(authorize_create(&signed(&v2, &[1]))),
            Outcome::Version(1, 2)
        );
        let invalid = policy("test/p", 1, None, &[1], 2, &[]);
        assert_eq!(
            outcome(authorize_create(&signed(&invalid, &[1]))),
            Outcome::Invalid
        );
    }

    /// A deleted session at version 3 with hash `tomb`: only a later version naming `tomb`
    /// re-creates it; the replayed version 1 (no predecessor) is a resurrection.
    #[test]
    fn recreate_needs_a_later_version_naming_the_tombstone() {
        let tomb = SessionHash::of("v3");
        let replayed = policy("test/p", 1, None, &[1], 1, &[]);
        let err = authorize_recreate("test/p", 3, &tomb, &signed(&replayed, &[1])).unwrap_err();
        assert_eq!(err.rule(), "resurrection", "{err}");
        let stale = policy("test/p", 3, Some(tomb), &[1], 1, &[]);
        let err = authorize_recreate("test/p", 3, &tomb, &signed(&stale, &[1])).unwrap_err();
        assert_eq!(err.rule(), "resurrection", "{err}");
        let other = policy("test/p", 4, Some(SessionHash::of("v2")), &[1], 1, &[]);
        let err = authorize_recreate("test/p", 3, &tomb, &signed(&other, &[1])).unwrap_err();
        assert_eq!(err.rule(), "resurrection", "{err}");
        let good = policy("test/p", 4, Some(tomb), &[1], 1, &[]);
        assert_eq!(
            outcome(authorize_recreate("test/p", 3, &tomb, &signed(&good, &[]))),
            Outcome::Unsigned
        );
        assert_eq!(
            outcome(authorize_recreate("test/q", 3, &tomb, &signed(&good, &[1]))),
            Outcome::Name
        );
        assert_eq!(
            outcome(authorize_recreate("test/p", 3, &tomb, &signed(&good, &[1]))),
            Outcome::Ok
        );
    }

    /// Version 1 owned by keys 1 and 2, two approvals required.
    fn current() -> (Policy, SessionHash) {
        let yaml = policy("test/p", 1, None, &[1, 2], 2, &[]);
        let p = authorize_create(&signed(&yaml, &[1, 2])).unwrap();
        let h = p.hash();
        (p, h)
    }

    #[rstest]
    #[case::two_of_two("test/p", 2, true, &[1, 2], &[1, 2], Outcome::Ok)]
    #[case::unsigned("test/p", 2, true, &[1, 2], &[], Outcome::Unsigned)]
    #[case::one_of_two("test/p", 2, true, &[1, 2], &[1], Outcome::Approvals(1, 2))]
    #[case::second_signature_by_a_non_owner("test/p", 2, true, &[1, 2], &[1, 3], Outcome::Approvals(1, 2))]
    #[case::stale_predecessor("test/p", 2, false, &[1, 2], &[1, 2], Outcome::Stale)]
    #[case::skipped_version("test/p", 3, true, &[1, 2], &[1, 2], Outcome::Version(2, 3))]
    #[case::regression_lost_race_is_stale_not_wrong_version("test/p", 1, false, &[1, 2], &[1, 2], Outcome::Stale)]
    #[case::renamed("test/q", 2, true, &[1, 2], &[1, 2], Outcome::Name)]
    #[case::new_owners_cannot_approve_themselves("test/p", 2, true, &[3], &[3], Outcome::Approvals(0, 2))]
    #[case::dropping_an_owner_needs_both("test/p", 2, true, &[1], &[1, 2], Outcome::Ok)]
    fn update(
        #[case] name: &str,
        #[case] version: u64,
        #[case] right_predecessor: bool,
        #[case] owners: &[u8],
        #[case] signers: &[u8],
        #[case] expected: Outcome,
    ) {
        let (cur, cur_hash) = current();
        let predecessor = if right_predecessor {
            cur_hash
        } else {
            SessionHash::of("an older version")
        };
        let approvals = owners.len().min(2);
        let yaml = policy(
            name,
            version,
            (version > 1).then_some(predecessor),
            owners,
            approvals,
            &[],
        );
        assert_eq!(
            outcome(authorize_update(&cur, &cur_hash, &signed(&yaml, signers))),
            expected
        );
    }

    #[test]
    fn update_signature_over_another_hash_is_refused() {
        let (cur, cur_hash) = current();
        let yaml = policy("test/p", 2, Some(cur_hash), &[1, 2], 2, &[]);
        let mut update = signed(&yaml, &[1]);
        // Owner 2's signature over a different version, attached to this one.
        update
            .signatures
            .push(key(2).sign(&SessionHash::of("a different version")));
        assert_eq!(
            outcome(authorize_update(&cur, &cur_hash, &update)),
            Outcome::BadSignature("owner2")
        );
        let err = authorize_update(&cur, &cur_hash, &update).unwrap_err();
        assert_eq!(err.rule(), "bad-signature");
        assert!(
            err.to_string().contains(&update.hash().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_same_owner_twice_counts_once() {
        let (cur, cur_hash) = current();
        let yaml = policy("test/p", 2, Some(cur_hash), &[1, 2], 2, &[]);
        let mut update = signed(&yaml, &[1]);
        update.signatures.push(key(1).sign(&update.hash()));
        match authorize_update(&cur, &cur_hash, &update) {
            Err(Error::InsufficientApprovals {
                have: 1,
                need: 2,
                ignored,
            }) => {
                assert_eq!(ignored, vec!["owner owner1 signed twice"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stale_predecessor_names_both_hashes() {
        let (cur, cur_hash) = current();
        let old = SessionHash::of("old");
        let yaml = policy("test/p", 2, Some(old), &[1, 2], 2, &[]);
        match authorize_update(&cur, &cur_hash, &signed(&yaml, &[1, 2])) {
            Err(Error::StalePredecessor { expected, got }) => {
                assert_eq!((expected, got), (cur_hash, Some(old)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[rstest]
    #[case::an_owner(&[1], true)]
    #[case::a_stranger(&[3], false)]
    #[case::a_stranger_then_an_owner(&[3, 2], true)]
    #[case::nobody(&[], false)]
    fn signed_by_a_current_owner(#[case] signers: &[u8], #[case] expected: bool) {
        let (cur, cur_hash) = current();
        let yaml = policy("test/p", 2, Some(cur_hash), &[1, 2], 2, &[]);
        let update = signed(&yaml, signers);
        assert_eq!(
            signed_by_an_owner(cur.access(), &update.hash(), &update.signatures),
            expected
        );
    }

    /// An owner's key naming itself over another document is no owner signature of this one.
    #[test]
    fn an_owner_signature_over_another_hash_does_not_count() {
        let (cur, cur_hash) = current();
        let yaml = policy("test/p", 2, Some(cur_hash), &[1, 2], 2, &[]);
        let mut update = signed(&yaml, &[]);
        update
            .signatures
            .push(key(1).sign(&SessionHash::of("a different version")));
        assert!(!signed_by_an_owner(
            cur.access(),
            &update.hash(),
            &update.signatures
        ));
    }

    #[rstest]
    #[case::owner(1, true)]
    #[case::read_principal(2, true)]
    #[case::stranger(3, false)]
    fn read(#[case] who: u8, #[case] allowed: bool) {
        let p = Policy::parse(&policy("test/p", 1, None, &[1], 1, &[2])).unwrap();
        let result = authorize_read(&p, &key(who).fingerprint());
        assert_eq!(result.is_ok(), allowed, "{result:?}");
        if let Err(e) = result {
            assert!(matches!(e, Error::ReadDenied { .. }));
        }
    }

    #[test]
    fn read_principal_by_fingerprint() {
        let yaml = policy("test/p", 1, None, &[1], 1, &[]).replacen(
            "  update:",
            &format!(
                "  read:\n    - name: ci\n      fingerprint: {}\n  update:",
                key(4).fingerprint()
            ),
            1,
        );
        let p = Policy::parse(&yaml).unwrap();
        assert!(authorize_read(&p, &key(4).fingerprint()).is_ok());
    }

    /// Exports `k` to `test/importer` owned by key 2 (and, when given, to the version `pin`).
    fn exporter_with(
        version: u64,
        predecessor: Option<SessionHash>,
        pin: Option<SessionHash>,
    ) -> Policy {
        let mut yaml = format!("name: test/exporter\nversion: {version}\n");
        if let Some(p) = predecessor {
            yaml.push_str(&format!("predecessor: {p}\n"));
        }
        yaml.push_str(&format!(
            "access:\n  owners:\n    - name: a\n      key: {}\nsecurity:\n  tees: [sim]\n\
             secrets:\n  - name: k\n    kind: aes256\n  - name: private\n    kind: aes256\n\
             export:\n  - secret: k\n    to:\n      - session: test/importer\n        owners: [{}]\n",
            public_b64(1),
            key(2).fingerprint(),
        ));
        if let Some(pin) = pin {
            yaml.push_str(&format!(
                "      - session: test/pinned\n        session_hash: {pin}\n"
            ));
        }
        Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"))
    }

    fn exporter(version: u64, predecessor: Option<SessionHash>) -> Policy {
        exporter_with(version, predecessor, None)
    }

    fn importer(name: &str, secret: &str, pinned: SessionHash) -> Policy {
        importer_owned(name, secret, pinned, &[2])
    }

    fn importer_owned(name: &str, secret: &str, pinned: SessionHash, owners: &[u8]) -> Policy {
        let mut keys = String::new();
        for n in owners {
            keys.push_str(&format!(
                "    - name: o{n}\n      key: {}\n",
                public_b64(*n)
            ));
        }
        let yaml = format!(
            "name: {name}\nversion: 1\naccess:\n  owners:\n{keys}security:\n  tees: [sim]\n\
             services:\n  - name: app\n    attestation: [{{measurements: [{MEASUREMENT}]}}]\n    env:\n      K: $$cloister:imported:hex$$\n\
             secrets:\n  - name: imported\n    kind: import\n    from:\n      session:\n        session: test/exporter\n\
             \x20       secret: {secret}\n        session_hash: {pinned}\n"
        );
        Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"))
    }

    fn import_of(p: &Policy) -> &SessionImport {
        p.session_imports().next().unwrap().1
    }

    /// `importer` with its own owners standing for its namespace's, and no earlier version.
    fn authorize(importer: &Policy, exporter: &Policy) -> Result<(), Error> {
        let owners = importer
            .access()
            .owners
            .iter()
            .map(|o| o.key.fingerprint())
            .collect();
        let history = [importer.hash()];
        let who = Importer::new(importer, &history, &owners);
        authorize_import(&who, import_of(importer), exporter, &exporter.hash())
    }

    #[test]
    fn import_allowed() {
        let exp = exporter(1, None);
        let imp = importer("test/importer", "k", exp.hash());
        authorize(&imp, &exp).unwrap();
    }

    #[test]
    fn import_not_exported_to_the_importer() {
        let exp = exporter(1, None);
        let imp = importer("test/stranger", "k", exp.hash());
        let err = authorize(&imp, &exp).unwrap_err();
        assert!(
            matches!(err, Error::ImportNotExported { ref importer, .. } if importer == "test/stranger"),
            "{err}"
        );
    }

    #[test]
    fn import_of_a_secret_that_is_not_exported() {
        let exp = exporter(1, None);
        let imp = importer("test/importer", "private", exp.hash());
        let err = authorize(&imp, &exp).unwrap_err();
        assert!(
            matches!(err, Error::ImportNotExported { ref secret, .. } if secret == "private"),
            "{err}"
        );
    }

    #[test]
    fn import_pinned_to_an_old_exporter_hash() {
        let v1 = exporter(1, None);
        let imp = importer("test/importer", "k", v1.hash());
        let v2 = exporter(2, Some(v1.hash()));
        let err = authorize(&imp, &v2).unwrap_err();
        match err {
            Error::ImportHashMismatch { pinned, current } => {
                assert_eq!((pinned, current), (v1.hash(), v2.hash()))
            }
            other => panic!("{other:?}"),
        }
    }

    /// A session the export does not name, pinning a stale hash of the exporter, learns that
    /// the export is not for it, never the exporter's current hash.
    #[test]
    fn regression_import_not_exported_is_checked_before_the_hash() {
        let v1 = exporter(1, None);
        let v2 = exporter(2, Some(v1.hash()));
        let imp = importer("test/stranger", "k", v1.hash());
        let err = authorize(&imp, &v2).unwrap_err();
        assert!(matches!(err, Error::ImportNotExported { .. }), "{err}");
        assert!(!err.to_string().contains(&v2.hash().to_string()), "{err}");
        // A squatter of the importer's name, likewise.
        let squat = importer_owned("test/importer", "k", v1.hash(), &[3]);
        let err = authorize(&squat, &v2).unwrap_err();
        assert!(matches!(err, Error::ExportIdentity { .. }), "{err}");
        assert!(!err.to_string().contains(&v2.hash().to_string()), "{err}");
    }

    #[test]
    fn import_from_another_session() {
        let exp = exporter(1, None);
        let imp = importer("test/importer", "k", exp.hash());
        let other = Policy::parse(&policy("test/other", 1, None, &[1], 1, &[])).unwrap();
        let err = authorize(&imp, &other).unwrap_err();
        assert!(matches!(err, Error::ImportWrongSession { .. }), "{err}");
    }

    #[rstest]
    #[case::the_named_owners(&[2], true)]
    #[case::a_squatter_with_its_own_key(&[3], false)]
    #[case::a_squatter_naming_the_owner_beside_itself(&[2, 3], false)]
    fn exports_follow_the_owners_not_the_name(#[case] owners: &[u8], #[case] allowed: bool) {
        let exp = exporter(1, None);
        let imp = importer_owned("test/importer", "k", exp.hash(), owners);
        match authorize(&imp, &exp) {
            Ok(()) => assert!(allowed),
            Err(e) => {
                assert!(!allowed, "{e}");
                assert!(matches!(e, Error::ExportIdentity { .. }), "{e}");
                assert_eq!(e.rule(), "export-identity");
            }
        }
    }

    #[test]
    fn exports_follow_a_pinned_version_and_its_successors() {
        let exp0 = exporter(1, None);
        // The legitimate importer, version 1, then version 2 pinning the exporter that pins v1.
        let v1 = importer_owned("test/pinned", "k", exp0.hash(), &[3]);
        let exp = exporter_with(2, Some(exp0.hash()), Some(v1.hash()));
        let v2 = importer_owned("test/pinned", "k", exp.hash(), &[3]);
        let owners = BTreeSet::new();
        let history = [v1.hash(), v2.hash()];
        authorize_import(
            &Importer::new(&v2, &history, &owners),
            import_of(&v2),
            &exp,
            &exp.hash(),
        )
        .unwrap();
        // A squatter's session of that name has another history.
        let squat = importer_owned("test/pinned", "k", exp.hash(), &[4]);
        let err = authorize_import(
            &Importer::new(&squat, &[squat.hash()], &owners),
            import_of(&squat),
            &exp,
            &exp.hash(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ExportIdentity { .. }), "{err}");
    }
}
