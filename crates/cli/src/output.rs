//! Printing results: tables for people, JSON for programs.

use cloister_attest::{Claims, rfc3339};
use comfy_table::Table;
use std::time::{Duration, SystemTime};

pub use cloister_roles::output::{json, print_table, table};

/// Seconds since the Unix epoch as RFC 3339.
pub fn unix_rfc3339(secs: u64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The claims as a two-column field / value table.
pub fn claims_table(claims: &Claims) -> Table {
    let mut t = table(&["claim", "value"]);
    t.add_row(vec!["tee".to_string(), claims.tee.to_string()]);
    t.add_row(vec!["format".to_string(), claims.format.to_string()]);
    t.add_row(vec![
        "measurement".to_string(),
        hex::encode(&claims.measurement),
    ]);
    if let Some(signer) = &claims.signer {
        t.add_row(vec!["signer".to_string(), hex::encode(signer)]);
    }
    if let Some(p) = claims.product_id {
        t.add_row(vec!["product_id".to_string(), p.to_string()]);
    }
    if let Some(svn) = claims.svn {
        t.add_row(vec!["svn".to_string(), svn.to_string()]);
    }
    t.add_row(vec![
        "tcb_status".to_string(),
        claims.tcb_status.to_string(),
    ]);
    t.add_row(vec![
        "advisory_ids".to_string(),
        claims.advisory_ids.join(", "),
    ]);
    t.add_row(vec!["debug".to_string(), claims.debug.to_string()]);
    t.add_row(vec![
        "report_data".to_string(),
        hex::encode(&claims.report_data),
    ]);
    if let Some(exp) = claims.expires_at {
        t.add_row(vec!["expires_at".to_string(), unix_rfc3339(exp)]);
    }
    for (k, v) in &claims.extra {
        t.add_row(vec![k.clone(), v.clone()]);
    }
    t
}
