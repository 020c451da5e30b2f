//! A layer split into several Lambda layers (`cargo xtask layer --split`): which parts, in
//! which order. `build` writes it, `verify` reads it; neither imports the other, so it lives here.
//!
//! Lambda extracts a function's layers into one `/opt`, in the order of `--layers`, a later
//! layer overwriting the files of an earlier one. The parts never share a file, so the merged
//! `/opt` is exactly the layer built as one; the order is still recorded (and checked), so that
//! a part left out or swapped is noticed before the function is deployed.

use serde::{Deserialize, Serialize};

/// The stack file beside the parts.
pub const STACK_FILE: &str = "layers.json";
/// Lambda attaches at most five layers to a function.
pub const MAX_LAYERS: usize = 5;
/// Where in the layer each part carries its marker, `part-K-of-N.json` (a path of its own in
/// every part, so the merged `/opt` holds all of them and no part overwrites another's).
pub const MARKER_DIR: &str = "python/layer-stack";

/// `layers.json`: the parts in the order Lambda must stack them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    pub layer: String,
    pub arch: String,
    /// The sha256 of the layer as one zip: the same in every part's marker, so that parts of
    /// two builds are not mixed.
    pub id: String,
    /// How to publish the parts, in words.
    pub how: String,
    /// First to last: the order of the ARNs in `aws lambda update-function-configuration --layers`.
    pub parts: Vec<StackPart>,
}

/// One part of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackPart {
    /// 1-based position in the stack.
    pub part: usize,
    /// The zip's file name, beside `layers.json`.
    pub file: String,
    pub zip_bytes: u64,
    pub unpacked_bytes: u64,
    /// Files and links (folders not counted).
    pub files: u64,
    pub sha256: String,
    /// The first and last file of the part, in path order, to tell parts apart at a glance.
    pub first: String,
    pub last: String,
}

/// The marker each part carries at `MARKER_DIR/part-K-of-N.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub layer: String,
    pub arch: String,
    pub id: String,
    pub part: usize,
    pub parts: usize,
}

/// The marker's path inside the layer.
pub fn marker_path(part: usize, parts: usize) -> String {
    format!("{MARKER_DIR}/part-{part}-of-{parts}.json")
}

/// `<name>-<arch>-<k>-of-<n>.zip`.
pub fn part_file_name(layer: &str, arch: &str, part: usize, parts: usize) -> String {
    format!("{layer}-{arch}-{part}-of-{parts}.zip")
}

/// Whether `file_name` is a part's name of `layer` for `arch` (any k, any n).
pub fn is_part_file_name(file_name: &str, layer: &str, arch: &str) -> bool {
    let Some(rest) = file_name
        .strip_prefix(&format!("{layer}-{arch}-"))
        .and_then(|r| r.strip_suffix(".zip"))
    else {
        return false;
    };
    let mut numbers = rest.split("-of-");
    let digits =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    digits(numbers.next()) && digits(numbers.next()) && numbers.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_are_recognised_and_nothing_else() {
        let name = part_file_name("python-litellm", "arm64", 2, 3);
        assert_eq!(name, "python-litellm-arm64-2-of-3.zip");
        assert!(is_part_file_name(&name, "python-litellm", "arm64"));
        assert!(!is_part_file_name(
            "python-litellm-arm64.zip",
            "python-litellm",
            "arm64"
        ));
        assert!(!is_part_file_name(&name, "python-litellm", "x86_64"));
        assert!(!is_part_file_name(
            "python-litellm-arm64-2-of-x.zip",
            "python-litellm",
            "arm64"
        ));
        assert_eq!(marker_path(1, 4), "python/layer-stack/part-1-of-4.json");
    }
}
