//! Reading `python -X importtime` output: one line per module, printed when its import ends
//! (children before their parent), indented two spaces per level of nesting:
//!
//! ```text
//! import time: self [us] | cumulative | imported package
//! import time:       120 |        120 |     _weakrefset
//! import time:       300 |        420 |   abc
//! ```
//!
//! The script `analyze --imports` runs writes marker lines around the timed imports, so that
//! the interpreter's own start-up imports (`site`, `encodings`...) are kept apart.

/// One import as one process saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub name: String,
    pub self_us: u64,
    pub cum_us: u64,
    /// In the order they were imported.
    pub children: Vec<Raw>,
}

pub const START: &str = "@@analyze-imports-start@@";
pub const END: &str = "@@analyze-imports-end@@";
pub const RESULT: &str = "@@analyze-imports-result@@";

/// The Python each process runs: the markers around importing `modules`, then one result line
/// on stdout (the wall-clock time of the imports, the version, the standard library's names).
pub fn script(modules: &[String]) -> String {
    // A JSON list of strings is a valid Python literal.
    let list = serde_json::Value::from(modules.to_vec());
    format!(
        "import sys, time\n\
         sys.stderr.flush(); sys.stderr.write('{START}\\n'); sys.stderr.flush()\n\
         _t0 = time.perf_counter()\n\
         for _m in {list}:\n    __import__(_m)\n\
         _t1 = time.perf_counter()\n\
         sys.stderr.flush(); sys.stderr.write('{END}\\n'); sys.stderr.flush()\n\
         import json\n\
         print('{RESULT}' + json.dumps({{'wall_s': _t1 - _t0, 'version': sys.version.split()[0], \
         'stdlib': sorted(getattr(sys, 'stdlib_module_names', []))}}))\n"
    )
}

/// A parsed process: the interpreter's start-up imports and the timed ones, each the list of
/// top-level imports with their subtrees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub startup: Vec<Raw>,
    pub timed: Vec<Raw>,
}

/// `self`, `cumulative`, nesting level and name of one `import time:` line.
fn line(l: &str) -> Option<(u64, u64, usize, &str)> {
    let rest = l.strip_prefix("import time:")?;
    let mut parts = rest.splitn(3, '|');
    let self_us = parts.next()?.trim().parse().ok()?;
    let cum_us = parts.next()?.trim().parse().ok()?;
    // "| " then two spaces per level.
    let name_part = parts.next()?.strip_prefix(' ')?;
    let name = name_part.trim_start_matches(' ');
    let level = (name_part.len() - name.len()) / 2;
    (!name.is_empty()).then_some((self_us, cum_us, level, name.trim_end()))
}

/// Builds the trees of a run's stderr; lines that are not importtime's are skipped.
pub fn parse(stderr: &str) -> Parsed {
    // pending[level]: finished imports at that level waiting for their parent's line.
    let mut sections: [Vec<Vec<Raw>>; 2] = [Vec::new(), Vec::new()];
    let mut current = 0;
    for l in stderr.lines() {
        match l.trim_end() {
            START => {
                current = 1;
                continue;
            }
            END => {
                current = 2;
                continue;
            }
            _ => {}
        }
        if current == 2 {
            continue;
        }
        let Some((self_us, cum_us, level, name)) = line(l) else {
            continue;
        };
        let pending = &mut sections[current];
        if pending.len() < level + 2 {
            pending.resize_with(level + 2, Vec::new);
        }
        let children = std::mem::take(&mut pending[level + 1]);
        // Deeper leftovers (a malformed line order) become children too, rather than vanish.
        let mut children = children;
        for deeper in pending.iter_mut().skip(level + 2) {
            children.append(deeper);
        }
        pending[level].push(Raw {
            name: name.to_owned(),
            self_us,
            cum_us,
            children,
        });
    }
    let [startup, timed] = sections.map(|mut p| {
        // Whatever is left below level 0 (an import cut short) is kept at the top.
        let mut top = if p.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut p[0])
        };
        for rest in p.iter_mut().skip(1) {
            top.append(rest);
        }
        top
    });
    Parsed { startup, timed }
}

/// Calls `f` on every node with its ancestors' names, depth first, parents before children.
pub fn walk<'a>(
    nodes: &'a [Raw],
    trail: &mut Vec<&'a str>,
    f: &mut impl FnMut(&'a Raw, &[&'a str]),
) {
    for n in nodes {
        f(n, trail);
        trail.push(&n.name);
        walk(&n.children, trail, f);
        trail.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
import time: self [us] | cumulative | imported package
import time:        50 |         50 |   _io
import time:       100 |        150 | io
@@analyze-imports-start@@
import time:        10 |         10 |       c.deep
import time:        20 |         30 |     b.inner
import time:         5 |          5 |     b.other
import time:       100 |        135 |   b
import time:       200 |        335 | a
some warning on stderr
import time:         7 |          7 | lazy
@@analyze-imports-end@@
import time:        90 |         90 | json
";

    #[test]
    fn nests_by_indentation_and_keeps_start_up_apart() {
        let p = parse(SAMPLE);
        assert_eq!(p.startup.len(), 1);
        assert_eq!(p.startup[0].name, "io");
        assert_eq!(p.startup[0].children[0].name, "_io");
        let names: Vec<&str> = p.timed.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "lazy"], "json came after the end marker");
        let a = &p.timed[0];
        assert_eq!((a.self_us, a.cum_us), (200, 335));
        let b = &a.children[0];
        assert_eq!(b.name, "b");
        let kids: Vec<&str> = b.children.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(kids, ["b.inner", "b.other"]);
        assert_eq!(b.children[0].children[0].name, "c.deep");
    }

    #[test]
    fn walk_gives_every_node_its_chain() {
        let p = parse(SAMPLE);
        let mut seen = Vec::new();
        walk(&p.timed, &mut Vec::new(), &mut |n, trail| {
            seen.push(format!("{} <- {}", n.name, trail.join(" > ")));
        });
        assert!(
            seen.contains(&"c.deep <- a > b > b.inner".to_owned()),
            "{seen:?}"
        );
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert_eq!(line("import time: x | 1 | a"), None);
        assert_eq!(
            line("import time: self [us] | cumulative | imported package"),
            None
        );
        assert_eq!(line("import time:   1 |   2 |     m"), Some((1, 2, 2, "m")));
    }

    #[test]
    fn the_script_names_the_modules() {
        let s = script(&["litellm".to_owned()]);
        assert!(s.contains("for _m in [\"litellm\"]:"), "{s}");
        assert!(s.contains(START) && s.contains(END) && s.contains(RESULT));
    }
}
