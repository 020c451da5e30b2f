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
    for line in logical_lines(source) {
        let top_level = !line.starts_with(|c: char| c.is_whitespace());
        for statement in line.split(';') {
            parse_statement(statement.trim(), top_level, &mut out);
        }
    }
    out
}

/// The source as logical lines: comments dropped, every string literal replaced by `""`,
/// lines inside brackets or after a backslash joined into one.
fn logical_lines(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' => {
                i = skip_string(&chars, i);
                current.push_str("\"\"");
                continue;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                current.push(' ');
                i += 2;
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '\n' if depth == 0 => {
                lines.push(std::mem::take(&mut current));
                i += 1;
                continue;
            }
            '\n' => {
                current.push(' ');
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    lines.push(current);
    lines
}

/// The index just after the string literal that starts at `start` (a quote character); string
/// prefixes (`r`, `b`, `f`) were already copied as ordinary letters, which is harmless.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            c if c == quote && !triple => return i + 1,
            c if c == quote
                && chars.get(i + 1) == Some(&quote)
                && chars.get(i + 2) == Some(&quote) =>
            {
                return i + 3
            }
            // An unterminated one-line string ends at the line's end (a syntax error anyway).
            '\n' if !triple => return i,
            _ => i += 1,
        }
    }
    i
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
