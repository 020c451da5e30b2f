//! Finding programs on `PATH`: the one place that reads it.

use camino::{Utf8Path, Utf8PathBuf};

/// The first file called `program` in a folder of `PATH`; `None` when there is none.
pub fn which(program: &str) -> Option<Utf8PathBuf> {
    let path = std::env::var("PATH").ok()?;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Utf8Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// The first of `programs` found on `PATH`, in the order given.
pub fn which_any<'a>(programs: impl IntoIterator<Item = &'a str>) -> Option<Utf8PathBuf> {
    programs.into_iter().find_map(which)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_shell_and_not_nonsense() {
        assert!(which("sh").is_some_and(|p| p.is_absolute() && p.ends_with("sh")));
        assert_eq!(which("no-such-program-anywhere-7f3a"), None);
        assert_eq!(
            which_any(["no-such-program-anywhere-7f3a", "sh"])
                .map(|p| p.file_name().map(str::to_owned)),
            Some(Some("sh".to_owned()))
        );
    }
}
