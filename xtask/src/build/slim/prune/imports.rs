//! A line scanner for Python import statements: enough to know which modules a module names,
//! without a Python parser. Comments and string literals (docstrings too) are blanked out
//! first, bracketed and backslash-continued lines are joined, then each statement that starts
//! with `import` or `from` is read. It over-approximates on purpose: an import inside a
//! function, a `try:` or `if TYPE_CHECKING:` counts as much as one at module level, because
//! pruning must never remove what any code path of a kept module may import.

/// One import statement: `from ..a.b import c, d` is `{ dots: 2, module: "a.b", names: [c, d] }`;
/// `import a.b` is `{ dots: 0, module: "a.b", names: [] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Leading dots of a relative import; 0 for an absolute one.
    pub dots: usize,
    /// Dotted module path; empty for `from . import x`.
    pub module: String,
    /// The names after `from ... import`; empty for `import a.b`, and for `import *`.
    pub names: Vec<String>,
    /// The statement starts its line at column 0: it runs whenever the module is imported
    /// (not inside a function, `try:` or `if`).
    pub top_level: bool,
}

/// Every import statement of a module's source.
pub fn scan(source: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let word = memchr::memmem::Finder::new(b"import");
    for_each_logical_line(source.as_bytes(), &mut |line| {
        // Both forms (`import a`, `from a import b`) hold the word: most lines are skipped
        // without being split or trimmed.
        if word.find(line).is_none() {
            return;
        }
        // Cut only at ASCII bytes, so always UTF-8; the check costs nothing next to the scan.
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let top_level = !line.starts_with(|c: char| c.is_whitespace());
        for statement in line.split(';') {
            parse_statement(statement.trim(), top_level, &mut out);
        }
    });
    out
}

/// Calls `emit` with each logical line of the source: comments dropped, every string literal
/// replaced by `""`, lines inside brackets or after a backslash joined into one.
///
/// Works on bytes and copies runs of ordinary bytes whole (every byte that matters is ASCII,
/// and UTF-8 never uses an ASCII byte inside a multi-byte character): the scan reads every
/// kept module of a layer, and this is what keeps it fast in a debug build.
fn for_each_logical_line(bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
    let mut current: Vec<u8> = Vec::new();
    let mut depth = 0usize;
    let mut run = 0; // start of the ordinary bytes not yet copied into `current`
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' => {
                current.extend_from_slice(&bytes[run..i]);
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                run = i;
                continue;
            }
            b'"' | b'\'' => {
                current.extend_from_slice(&bytes[run..i]);
                i = skip_string(bytes, i);
                current.extend_from_slice(b"\"\"");
                run = i;
                continue;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => {
                current.extend_from_slice(&bytes[run..i]);
                current.push(b' ');
                i += 2;
                run = i;
                continue;
            }
            b'\n' if depth == 0 => {
                // Most lines are one run of the source: no copy.
                if current.is_empty() {
                    emit(&bytes[run..i]);
                } else {
                    current.extend_from_slice(&bytes[run..i]);
                    emit(&current);
                    current.clear();
                }
                i += 1;
                run = i;
                continue;
            }
            b'\n' => {
                current.extend_from_slice(&bytes[run..i]);
                current.push(b' ');
                i += 1;
                run = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    current.extend_from_slice(&bytes[run..]);
    emit(&current);
}

/// The index just after the string literal that starts at `start` (a quote byte); string
/// prefixes (`r`, `b`, `f`) were already copied as ordinary letters, which is harmless.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let is_quote = |i: usize| bytes.get(i) == Some(&quote);
    let triple = is_quote(start + 1) && is_quote(start + 2);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        let rest = &bytes[i..];
        let next = if triple {
            memchr::memchr2(b'\\', quote, rest)
        } else {
            memchr::memchr3(b'\\', quote, b'\n', rest)
        };
        let Some(n) = next else {
            return bytes.len();
        };
        i += n;
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return i, // an unterminated one-line string ends at the line's end
            _ if !triple => return i + 1,
            _ if is_quote(i + 1) && is_quote(i + 2) => return i + 3,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_dotted_name(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_identifier)
}

/// An ASCII Python identifier (what installed module and folder names are in practice).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `a.b as c` -> `a.b`.
fn strip_alias(item: &str) -> &str {
    item.split_whitespace().next().unwrap_or("")
}

fn parse_statement(s: &str, top_level: bool, out: &mut Vec<Import>) {
    if let Some(rest) = s.strip_prefix("import") {
        if !rest.starts_with(|c: char| c.is_whitespace()) {
            return;
        }
        for item in rest.split(',') {
            let name = strip_alias(item.trim());
            if is_dotted_name(name) {
                out.push(Import {
                    dots: 0,
                    module: name.to_owned(),
                    names: Vec::new(),
                    top_level,
                });
            }
        }
    } else if let Some(rest) = s.strip_prefix("from") {
        if !rest.starts_with(|c: char| c.is_whitespace() || c == '.') {
            return;
        }
        let Some((from, names)) = rest.split_once(" import") else {
            return;
        };
        let from = from.trim();
        let dots = from.chars().take_while(|&c| c == '.').count();
        let module = from[dots..].trim();
        let relative_to_package = module.is_empty() && dots > 0;
        if !relative_to_package && !is_dotted_name(module) {
            return;
        }
        let names = names
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|n| strip_alias(n.trim()))
            .filter(|n| is_identifier(n))
            .map(str::to_owned)
            .collect();
        out.push(Import {
            dots,
            module: module.to_owned(),
            names,
            top_level,
        });
    }
}

/// The absolute module names an import statement of module `importer` may load: the module,
/// its parent packages, and `module.name` for each imported name (a name may be a submodule).
/// `importer_is_package` is true for an `__init__` module, whose relative imports start at
/// itself rather than at its parent. `None` when the relative import climbs above the top.
pub fn targets(importer: &str, importer_is_package: bool, import: &Import) -> Option<Vec<String>> {
    let base = if import.dots == 0 {
        import.module.clone()
    } else {
        let mut parts: Vec<&str> = importer.split('.').collect();
        if !importer_is_package {
            parts.pop();
        }
        for _ in 1..import.dots {
            parts.pop()?;
        }
        if parts.is_empty() {
            return None;
        }
        let mut base = parts.join(".");
        if !import.module.is_empty() {
            base.push('.');
            base.push_str(&import.module);
        }
        base
    };
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in base.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(part);
        out.push(prefix.clone());
    }
    out.extend(import.names.iter().map(|n| format!("{base}.{n}")));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn imp(dots: usize, module: &str, names: &[&str]) -> Import {
        Import {
            dots,
            module: module.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            top_level: true,
        }
    }

    fn lazy(i: Import) -> Import {
        Import {
            top_level: false,
            ..i
        }
    }

    #[test]
    fn reads_absolute_relative_and_multiline_imports() {
        let src = r#"
"""Docstring.

import not_this
from neither import that
"""
import os, a.b as ab  # import comment_only
from botocore.docs.docstring import (
    ClientMethodDocstring,  # a comment inside
    PaginatorDocstring as P,
)
from . import sibling
from ..m import y
from .x.y import *
def f():
    import lazy.mod; from pkg \
        import cont
s = "import in_string"
t = 'from q import r'
important = 1
fromage = 2
"#;
        assert_eq!(
            scan(src),
            vec![
                imp(0, "os", &[]),
                imp(0, "a.b", &[]),
                imp(
                    0,
                    "botocore.docs.docstring",
                    &["ClientMethodDocstring", "PaginatorDocstring"]
                ),
                imp(1, "", &["sibling"]),
                imp(2, "m", &["y"]),
                imp(1, "x.y", &[]),
                lazy(imp(0, "lazy.mod", &[])),
                lazy(imp(0, "pkg", &["cont"])),
            ]
        );
    }

    /// The byte scanner's corners: escapes, unterminated strings, quotes in comments, joined
    /// lines, non-ASCII text, CRLF, and an indent that is Unicode whitespace.
    #[test]
    fn strings_comments_and_joined_lines_at_their_edges() {
        let cases: [(&str, Vec<Import>); 12] = [
            (
                "s = 'it\\'s'; import a\nimport b",
                vec![imp(0, "a", &[]), imp(0, "b", &[])],
            ),
            ("x = '''a ''' import no\nimport c", vec![imp(0, "c", &[])]),
            ("t = \"unterminated\nimport d", vec![imp(0, "d", &[])]),
            (
                "u = \"\"\"doc \\\"\"\" still\nimport nope\n\"\"\"\nimport e",
                vec![imp(0, "e", &[])],
            ),
            (
                "# a comment with ' and \"\nimport f # import g",
                vec![imp(0, "f", &[])],
            ),
            (
                "from . import (\n  h,  # c\n  i)\nv = 'é'; import j",
                vec![imp(1, "", &["h", "i"]), imp(0, "j", &[])],
            ),
            (
                "import k \\\n  , l\nw = 1 \\",
                vec![imp(0, "k", &[]), imp(0, "l", &[])],
            ),
            (
                "y = ')'\nimport m\nz = (\nimport n)\nimport o",
                vec![imp(0, "m", &[]), imp(0, "o", &[])],
            ),
            ("q = 'end\\", vec![]),
            (
                "import p\r\nimport r\r\n\u{a0}import s",
                vec![imp(0, "p", &[]), imp(0, "r", &[]), lazy(imp(0, "s", &[]))],
            ),
            ("f = \"\"\"never closed\nimport t", vec![]),
            (
                "g = ''\nimport u; from .v import (w as x, y)",
                vec![imp(0, "u", &[]), imp(1, "v", &["w", "y"])],
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(scan(source), expected, "{source:?}");
        }
    }

    #[test]
    fn resolves_relative_imports_from_modules_and_packages() {
        let t = |importer, pkg, i: Import| targets(importer, pkg, &i).unwrap();
        assert_eq!(
            t("pkg.sub.mod", false, imp(1, "", &["x"])),
            ["pkg", "pkg.sub", "pkg.sub.x"]
        );
        assert_eq!(
            t("pkg.sub", true, imp(1, "docs", &["a"])),
            ["pkg", "pkg.sub", "pkg.sub.docs", "pkg.sub.docs.a"]
        );
        assert_eq!(
            t("pkg.sub.mod", false, imp(2, "m", &["y"])),
            ["pkg", "pkg.m", "pkg.m.y"]
        );
        assert_eq!(t("a", false, imp(0, "b.c", &[])), ["b", "b.c"]);
        assert!(targets("top", false, &imp(1, "", &["x"])).is_none());
    }
}
