//! Sample keys and policies: owner key `n` is the key from seed `[n; 32]`, the same in every
//! test binary and in `cloister-policy`'s unit tests (whose fixtures these are, re-exported).

use cloister_cas::api::{CreateNamespace, NamespaceOwnerJson};
use cloister_cas::client::RequestSigner;

pub use cloister_policy::fixtures::{
    MEASUREMENT, base, head, head_of_keys, key, policy, public_b64, signed, sim_claims,
};

/// A request signer with owner key `n`.
pub fn signer(n: u8) -> RequestSigner {
    RequestSigner::from_owner_key(&key(n)).expect("an owner key signs requests")
}

/// The SPKI DER of owner key `n` (what the CAS records as an admin or owner).
pub fn spki(n: u8) -> Vec<u8> {
    signer(n).spki_der().to_vec()
}

/// The head of a sim session `name` owned by one custodian (base64 SPKI `owner_key`), every
/// line up to `services:`; the caller appends its services and secrets.
pub fn custodian_session(name: &str, owner_key: &str) -> String {
    format!(
        "name: {name}\nversion: 1\naccess:\n  owners:\n    - name: custodian\n      \
         key: {owner_key}\nsecurity:\n  tees: [sim]\nservices:\n"
    )
}

/// A namespace `name` owned by the keys `owners` (named `ns-owner<n>`), with an optional
/// session quota.
pub fn namespace(name: &str, owners: &[u8], quota: Option<u64>) -> CreateNamespace {
    CreateNamespace {
        name: name.to_owned(),
        owners: owners
            .iter()
            .map(|n| NamespaceOwnerJson {
                name: format!("ns-owner{n}"),
                public_key: public_b64(*n),
            })
            .collect(),
        session_quota: quota,
    }
}
