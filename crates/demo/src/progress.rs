//! Progress on stderr: the data generator reports rows through a callback, shown here as a bar.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr for `rows` rows, hidden when `visible` is false (`--quiet`,
/// `--json`) or when stderr is not a terminal.
pub fn rows_bar(rows: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rows);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
