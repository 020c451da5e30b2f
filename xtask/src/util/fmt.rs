//! Numbers for people.

/// `12.3 MB` (decimal megabytes, as Lambda's documentation counts).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
