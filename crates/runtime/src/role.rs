//! What runs once the workload is attested: a [`Role`], handed a [`RoleContext`].
//!
//! The runtime knows nothing of what a role does. `cloister-roles` supplies the roles (`job`,
//! and later `driver`, `executor`, `connect` on the engine); [`Job`] is the one-shot role, which hands the
//! opened bundle and the context to a callback.

use std::collections::BTreeMap;
use std::fmt;

use cloister_cas::envelope::WorkloadKey;
use secrecy::{ExposeSecret as _, SecretString};

use crate::bundle::Bundle;
use crate::error::RoleError;
use crate::files::{FILES_DIR_ENV, InjectedFiles};
use crate::measure::Measurement;

/// A role the runtime runs once attested.
pub trait Role {
    /// What the role produces.
    type Output;

    /// The role's name, for messages (`job`, `driver`, …).
    fn name(&self) -> &str;

    /// Whether the role needs an app bundle. Such a role is refused before attestation when
    /// none is given, since the measurement covers the bundle.
    fn needs_bundle(&self) -> bool {
        false
    }

    /// Run with the attested context. The injected files are removed when `ctx` is dropped.
    fn run(self, ctx: RoleContext) -> Result<Self::Output, RoleError>;
}

/// The workload's attested identity: its key, the certificate the session CA issued for it, and
/// the CAS's attestation token. For mutual TLS between workloads and for services that accept
/// the token.
pub struct Identity {
    /// The workload's key (P-256), generated in this process; never leaves it.
    pub key: WorkloadKey,
    /// The key's certificate, PEM, issued by the session CA.
    pub certificate_pem: String,
    /// The session CA's certificate, PEM.
    pub ca_pem: String,
    /// The attestation token (ES256 JWT).
    pub token: SecretString,
    /// When the token expires (seconds since the Unix epoch).
    pub token_expires_at: u64,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key", &self.key)
            .field("token_len", &self.token.expose_secret().len())
            .field("token_expires_at", &self.token_expires_at)
            .finish_non_exhaustive()
    }
}

/// Everything a role gets: who it is, what the policy configured, and the opened app bundle.
/// Values may hold secrets: they are `secrecy` strings; `Debug` shows names and sizes only.
pub struct RoleContext {
    /// The session.
    pub session: String,
    /// The service within it.
    pub service: String,
    /// The hash of the policy version that admitted this workload, hex.
    pub session_hash: String,
    /// This workload's measurement (executable and bundle).
    pub measurement: Measurement,
    /// The opened app bundle, when the launch had one.
    pub bundle: Option<Bundle>,
    /// The policy's `command`.
    pub command: Option<SecretString>,
    /// The policy's `args`, resolved (with the host's arguments where the policy allows them).
    pub args: Vec<SecretString>,
    /// The policy's `env`, resolved, without the bundle key (the runtime consumed it). Never
    /// put into this process's environment: pass it to a child with [`RoleContext::command`].
    pub env: BTreeMap<String, SecretString>,
    /// The injected files.
    pub files: InjectedFiles,
    /// The workload's key, certificate and token.
    pub identity: Identity,
}

impl fmt::Debug for RoleContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleContext")
            .field("session", &self.session)
            .field("service", &self.service)
            .field("session_hash", &self.session_hash)
            .field("measurement", &self.measurement)
            .field("bundle", &self.bundle)
            .field("command", &self.command.as_ref().map(|_| "…"))
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .field("identity", &self.identity)
            .finish()
    }
}

impl RoleContext {
    /// A command for `program` whose environment is exactly the policy's `env` (nothing of this
    /// process's is inherited, not even `PATH`), plus `CLOISTER_FILES_DIR` when the injected
    /// files are in a directory.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        cmd.env_clear();
        for (name, value) in &self.env {
            cmd.env(name, value.expose_secret());
        }
        if let Some(dir) = self.files.dir() {
            cmd.env(FILES_DIR_ENV, dir);
        }
        cmd
    }
}

/// The one-shot `job` role: hands the opened bundle and the context to a callback.
pub struct Job<F> {
    callback: F,
}

impl<F> fmt::Debug for Job<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl<F> Job<F> {
    /// A job running `callback(bundle, ctx)`; `ctx.bundle` is `None` (it was handed over).
    pub fn new(callback: F) -> Self {
        Self { callback }
    }
}

impl<F, T> Role for Job<F>
where
    F: FnOnce(Bundle, RoleContext) -> Result<T, RoleError>,
{
    type Output = T;

    fn name(&self) -> &str {
        "job"
    }

    fn needs_bundle(&self) -> bool {
        true
    }

    fn run(self, mut ctx: RoleContext) -> Result<T, RoleError> {
        let bundle = ctx
            .bundle
            .take()
            .ok_or("the job role needs an app bundle")?;
        (self.callback)(bundle, ctx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    /// The attestation token is a bearer secret: `Debug` shows its length only.
    #[test]
    fn debug_identity_omits_the_token() {
        let identity = Identity {
            key: WorkloadKey::generate().unwrap(),
            certificate_pem: "CERT".into(),
            ca_pem: "CA".into(),
            token: SecretString::from("eyJ.CANARY-token.sig"),
            token_expires_at: 7,
        };
        let shown = format!("{identity:?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(shown.contains("token_len: 20"), "{shown}");
    }
}
