//! Printing results: tables for people, JSON for programs (shared by the `cloister` CLI).

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::io::Write;

/// A new table in the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        // Without a terminal to ask, wrap long cells (errors, hashes) at a readable width.
        .set_width(terminal_width())
        .set_header(header.iter().copied());
    t
}

/// Print `value` as pretty JSON on stdout.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    // Serialise first, then write: a write error then reaches `main` as an `io::Error`, so a
    // closed pipe is recognised (serde_json's error would hide it).
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    std::io::stdout().lock().write_all(&text)?;
    Ok(())
}

/// Print a table on stdout.
pub fn print_table(t: &Table) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{t}")?;
    Ok(())
}

/// `abcdef…` shortened to its first `n` hex digits for tables.
pub fn short_hex(bytes: &[u8], n: usize) -> String {
    let h = hex::encode(bytes);
    if h.len() > n {
        format!("{}…", &h[..n])
    } else {
        h
    }
}

/// The width to wrap tables at: `$COLUMNS` when set, else 140.
fn terminal_width() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(140)
}
