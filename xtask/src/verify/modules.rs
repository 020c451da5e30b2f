//! Which top-level modules a layer's site-packages (and its `site-packages.zip`) offers.
//! Pure: works on names, so tests need no tree on disk.

use std::collections::BTreeSet;

/// One entry directly inside site-packages.
#[derive(Debug, Clone)]
pub struct SiteEntry {
    pub name: String,
    /// For a folder: the names of the files directly inside it.
    pub children: Option<Vec<String>>,
}

/// A Python identifier in the ASCII subset that distributions use for module names.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `mod.py`, `mod.pyc`, `mod.cpython-311-x86_64-linux-gnu.so`, `mod.abi3.so` -> `mod`.
fn module_of_file(name: &str) -> Option<&str> {
    let stem = if let Some(s) = name.strip_suffix(".py") {
        s
    } else if let Some(s) = name.strip_suffix(".pyc") {
        s
    } else if let Some(s) = name.strip_suffix(".so") {
        // The extension suffix is everything after the first dot.
        s.split('.').next()?
    } else {
        return None;
    };
    is_identifier(stem).then_some(stem)
}

fn is_code(file: &str) -> bool {
    file.ends_with(".py") || file.ends_with(".pyc") || file.ends_with(".so")
}

/// Top-level modules of a site-packages folder: packages (folders holding `__init__` or,
/// for namespace packages, any module file) and single-file modules. Metadata folders
/// (`*.dist-info`, `*.libs`) have dots in their names and drop out; so does `__pycache__`
/// and a `bin/` of console scripts, which holds no module files.
pub fn top_level(entries: &[SiteEntry]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in entries {
        match &e.children {
            Some(children) => {
                if is_identifier(&e.name)
                    && e.name != "__pycache__"
                    && children.iter().any(|c| is_code(c))
                {
                    out.insert(e.name.clone());
                }
            }
            None => {
                if let Some(m) = module_of_file(&e.name) {
                    // `sitecustomize`/`usercustomize` already ran at start-up.
                    if m != "sitecustomize" && m != "usercustomize" {
                        out.insert(m.to_owned());
                    }
                }
            }
        }
    }
    out
}

/// Top-level modules importable from a zip on `sys.path`, from its entry names. Extension
/// modules cannot be imported from a zip, so `.so` files do not count here (the static
/// checks flag them).
pub fn top_level_in_zip<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in names {
        match name.split_once('/') {
            Some((dir, rest)) => {
                let file = rest.rsplit('/').next().unwrap_or(rest);
                if is_identifier(dir)
                    && dir != "__pycache__"
                    && (file.ends_with(".py") || file.ends_with(".pyc"))
                {
                    out.insert(dir.to_owned());
                }
            }
            None => {
                if name.ends_with(".py") || name.ends_with(".pyc") {
                    if let Some(m) = module_of_file(name) {
                        out.insert(m.to_owned());
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, children: &[&str]) -> SiteEntry {
        SiteEntry {
            name: name.into(),
            children: Some(children.iter().map(|c| (*c).to_owned()).collect()),
        }
    }

    fn file(name: &str) -> SiteEntry {
        SiteEntry {
            name: name.into(),
            children: None,
        }
    }

    #[test]
    fn finds_packages_modules_and_extensions() {
        let entries = vec![
            dir("litellm", &["__init__.py", "main.py"]),
            dir("litellm-1.78.7.dist-info", &["METADATA", "RECORD"]),
            dir("tiktoken_ext", &["openai_public.py"]),
            dir("bin", &["litellm", "openai"]),
            dir("__pycache__", &["typing_extensions.cpython-311.pyc"]),
            dir("pydantic_core.libs", &["libfoo.so"]),
            dir("data_only", &["x.json"]),
            file("typing_extensions.py"),
            file("_yaml.cpython-311-x86_64-linux-gnu.so"),
            file("fastuuid.abi3.so"),
            file("distutils-precedence.pth"),
            file("sitecustomize.py"),
            file("py.typed"),
        ];
        let found: Vec<String> = top_level(&entries).into_iter().collect();
        assert_eq!(
            found,
            vec![
                "_yaml",
                "fastuuid",
                "litellm",
                "tiktoken_ext",
                "typing_extensions"
            ]
        );
    }

    #[test]
    fn finds_modules_in_a_zip() {
        let names = [
            "litellm/",
            "litellm/__init__.pyc",
            "litellm/types/",
            "six.pyc",
            "yaml/_yaml.cpython-311-x86_64-linux-gnu.so",
            "yaml/__init__.pyc",
            "litellm-1.78.7.dist-info/METADATA",
            "__pycache__/x.cpython-311.pyc",
            "native.cpython-311-x86_64-linux-gnu.so",
        ];
        let found: Vec<String> = top_level_in_zip(names).into_iter().collect();
        assert_eq!(found, vec!["litellm", "six", "yaml"]);
    }
}
