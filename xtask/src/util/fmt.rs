//! Numbers for people.

/// `12.3 MB` (decimal megabytes, as Lambda's documentation counts).
pub fn mb(bytes: u64) -> String {
    format!("{} MB", mb_number(bytes))
}

/// `12.3`: [`mb`] without the unit, for table columns headed "MB".
pub fn mb_number(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_000_000.0)
}

/// `1.23 s`, or `n/a` for a figure that was not measured.
pub fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} s"))
}
