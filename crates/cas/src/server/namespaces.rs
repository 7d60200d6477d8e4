//! Namespaces: what the admin key creates, updates and deletes, and who may read them (the
//! admin key and the namespace's owners). See the API docs ("Namespaces").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_policy::KeyFingerprint;

use super::error::ApiError;
use super::state::Inner;
use crate::api::{
    CreateNamespace, DEFAULT_SESSION_QUOTA, MAX_NAMESPACE_OWNERS, NamespaceList,
    NamespaceOwnerJson, NamespaceOwnerView, NamespaceView, UpdateNamespace,
};
use crate::audit::{Event, EventKind};
use crate::{Error, Namespace, NamespaceOwner};

/// What a signed request consists of, for handlers that authenticate inside the blocking task.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    /// The `Authorization` header, if any.
    pub header: Option<String>,
    /// The path and query as sent.
    pub path: String,
    /// The body's bytes.
    pub body: Vec<u8>,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The longest owner name accepted.
const MAX_OWNER_NAME: usize = 64;

fn owners_from(json: &[NamespaceOwnerJson]) -> Result<Vec<NamespaceOwner>, ApiError> {
    let refuse = |message: String| ApiError::NamespaceRefused {
        rule: "owners",
        message,
    };
    if json.is_empty() || json.len() > MAX_NAMESPACE_OWNERS {
        return Err(refuse(format!(
            "a namespace has 1 to {MAX_NAMESPACE_OWNERS} owners"
        )));
    }
    let mut owners: Vec<NamespaceOwner> = Vec::with_capacity(json.len());
    for (i, o) in json.iter().enumerate() {
        if o.name.is_empty()
            || o.name.len() > MAX_OWNER_NAME
            || o.name.chars().any(|c| c.is_control())
        {
            return Err(refuse(format!(
                "owners[{i}].name must be 1 to {MAX_OWNER_NAME} printable characters"
            )));
        }
        let key = cloister_policy::PublicKey::parse(&o.public_key).map_err(|_| {
            refuse(format!(
                "owners[{i}].public_key is not an Ed25519 public key (SPKI DER, base64 or PEM)"
            ))
        })?;
        let der = crate::admin::owner_der(&key)?;
        if owners.iter().any(|x| x.public_key == der) {
            return Err(refuse(format!("owners[{i}] repeats a key")));
        }
        owners.push(NamespaceOwner {
            name: o.name.clone(),
            public_key: der,
        });
    }
    Ok(owners)
}

fn fingerprints(owners: &[NamespaceOwner]) -> String {
    owners
        .iter()
        .map(|o| KeyFingerprint::of_spki_der(&o.public_key).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Inner {
    /// The admin key's fingerprint, or the `admin-key` refusal.
    fn admin(&self) -> Result<KeyFingerprint, ApiError> {
        match self.store.admin_key()? {
            Some(der) => Ok(KeyFingerprint::of_spki_der(&der)),
            None => Err(ApiError::NamespaceRefused {
                rule: "admin-key",
                message: "this CAS has no admin key, so no namespace can be created or \
                          changed; the operator runs `cloister cas init --data DIR \
                          --master-key-file FILE --admin-key admin.pem.pub` (with the CAS \
                          stopped) first"
                    .into(),
            }),
        }
    }

    /// Refuses anyone but the admin key.
    fn require_admin(&self, principal: &KeyFingerprint) -> Result<KeyFingerprint, ApiError> {
        let admin = self.admin()?;
        if *principal != admin {
            return Err(ApiError::NamespaceRefused {
                rule: "unauthorised",
                message: format!(
                    "only the CAS's admin key changes namespaces; key {principal} is not it"
                ),
            });
        }
        Ok(admin)
    }

    fn checked_namespace_name(name: &str) -> Result<(), ApiError> {
        cloister_policy::names::check_namespace(name).map_err(|_| ApiError::NamespaceRefused {
            rule: "name",
            message: "a namespace name is 1 to 63 of a-z 0-9 . _ - starting with a letter or \
                      digit"
                .into(),
        })
    }

    fn view(&self, ns: &Namespace) -> Result<NamespaceView, ApiError> {
        Ok(NamespaceView {
            name: ns.name.clone(),
            owners: ns
                .owners
                .iter()
                .map(|o| NamespaceOwnerView {
                    name: o.name.clone(),
                    public_key: B64.encode(&o.public_key),
                    fingerprint: KeyFingerprint::of_spki_der(&o.public_key).to_string(),
                })
                .collect(),
            session_quota: ns.session_quota,
            sessions: self.sessions_in(&ns.name)?,
            version: ns.version,
            created: rfc3339(ns.created),
            updated: rfc3339(ns.updated),
        })
    }

    fn may_read(&self, ns: &Namespace, principal: &KeyFingerprint) -> Result<bool, ApiError> {
        let admin = self
            .store
            .admin_key()?
            .map(|d| KeyFingerprint::of_spki_der(&d));
        Ok(admin.as_ref() == Some(principal)
            || ns
                .owners
                .iter()
                .any(|o| KeyFingerprint::of_spki_der(&o.public_key) == *principal))
    }

    fn lock_namespaces(&self) -> std::sync::MutexGuard<'_, ()> {
        self.namespace_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[tracing::instrument(skip_all)]
    pub fn create_namespace(
        &self,
        principal: &KeyFingerprint,
        body: CreateNamespace,
    ) -> Result<NamespaceView, ApiError> {
        let admin = self.require_admin(principal)?;
        Self::checked_namespace_name(&body.name)?;
        let owners = owners_from(&body.owners)?;
        let now = self.config.now();
        let ns = Namespace {
            name: body.name.clone(),
            owners,
            session_quota: body.session_quota.unwrap_or(DEFAULT_SESSION_QUOTA),
            version: 1,
            created: now,
            updated: now,
        };
        let _guard = self.lock_namespaces();
        match self.store.put_namespace(ns.clone(), None) {
            Ok(()) => {}
            Err(Error::Conflict { .. }) => {
                return Err(ApiError::Conflict {
                    rule: Some("exists"),
                    message: format!("namespace `{}` exists", ns.name),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.record(
            &Event::new(EventKind::NamespaceCreated)
                .principal(admin.to_string())
                .reason(format!("namespace: {}", ns.name))
                .reason(format!("owners: {}", fingerprints(&ns.owners)))
                .reason(format!("session_quota: {}", ns.session_quota)),
        )?;
        tracing::info!(namespace = %ns.name, "namespace created");
        self.view(&ns)
    }

    pub fn read_namespace(
        &self,
        principal: &KeyFingerprint,
        name: &str,
    ) -> Result<NamespaceView, ApiError> {
        let not_found = || ApiError::NotFound("no such namespace, or not yours to read".into());
        if cloister_policy::names::check_namespace(name).is_err() {
            return Err(not_found());
        }
        // Someone who may not read it learns nothing, not even that it exists.
        let ns = self.store.namespace(name)?.ok_or_else(not_found)?;
        if !self.may_read(&ns, principal)? {
            return Err(not_found());
        }
        self.view(&ns)
    }

    pub fn list_namespaces(&self, principal: &KeyFingerprint) -> Result<NamespaceList, ApiError> {
        let mut namespaces = Vec::new();
        for name in self.store.namespace_names()? {
            if let Some(ns) = self.store.namespace(&name)?
                && self.may_read(&ns, principal)?
            {
                namespaces.push(self.view(&ns)?);
            }
        }
        Ok(NamespaceList { namespaces })
    }

    #[tracing::instrument(skip_all, fields(namespace = name))]
    pub fn update_namespace(
        &self,
        principal: &KeyFingerprint,
        name: &str,
        body: UpdateNamespace,
    ) -> Result<NamespaceView, ApiError> {
        let admin = self.require_admin(principal)?;
        Self::checked_namespace_name(name)?;
        let owners = body.owners.as_deref().map(owners_from).transpose()?;
        let _guard = self.lock_namespaces();
        let current = self
            .store
            .namespace(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no namespace `{name}`")))?;
        if current.version != body.version {
            return Err(ApiError::Conflict {
                rule: Some("version"),
                message: format!(
                    "namespace `{name}` is at version {}, the update names {}",
                    current.version, body.version
                ),
            });
        }
        let mut next = current.clone();
        if let Some(owners) = owners {
            next.owners = owners;
        }
        if let Some(q) = body.session_quota {
            next.session_quota = q;
        }
        next.version = current.version.saturating_add(1);
        next.updated = self.config.now();
        match self
            .store
            .put_namespace(next.clone(), Some(current.version))
        {
            Ok(()) => {}
            Err(Error::Conflict { .. }) => {
                return Err(ApiError::Conflict {
                    rule: Some("version"),
                    message: "another change was accepted first".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.record(
            &Event::new(EventKind::NamespaceUpdated)
                .principal(admin.to_string())
                .version(next.version)
                .reason(format!("namespace: {name}"))
                .reason(format!("owners: {}", fingerprints(&next.owners)))
                .reason(format!("session_quota: {}", next.session_quota)),
        )?;
        self.view(&next)
    }

    #[tracing::instrument(skip_all, fields(namespace = name))]
    pub fn delete_namespace(
        &self,
        principal: &KeyFingerprint,
        name: &str,
    ) -> Result<NamespaceView, ApiError> {
        let admin = self.require_admin(principal)?;
        Self::checked_namespace_name(name)?;
        let _guard = self.lock_namespaces();
        let current = self
            .store
            .namespace(name)?
            .ok_or_else(|| ApiError::NotFound(format!("no namespace `{name}`")))?;
        let view = self.view(&current)?;
        if view.sessions > 0 {
            return Err(ApiError::NamespaceRefused {
                rule: "not-empty",
                message: format!(
                    "namespace `{name}` holds {} sessions; their owners delete them first",
                    view.sessions
                ),
            });
        }
        match self.store.delete_namespace(name, current.version) {
            Ok(_) => {}
            Err(Error::Conflict { .. }) => {
                return Err(ApiError::Conflict {
                    rule: Some("version"),
                    message: "another change was accepted first".into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.record(
            &Event::new(EventKind::NamespaceDeleted)
                .principal(admin.to_string())
                .version(current.version)
                .reason(format!("namespace: {name}")),
        )?;
        Ok(view)
    }
}
