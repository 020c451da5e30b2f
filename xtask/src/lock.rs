//! The lock file: PEP 751 `pylock.toml`, every package at one version with the sha256 of
//! each wheel. `cargo xtask lock` writes it with uv; `cargo xtask layer` only reads it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::spec::{Arch, Sha256Hex, Spec};

/// A parsed `pylock.toml` (the fields this tool uses; others are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PyLock {
    pub lock_version: String,
    #[serde(default)]
    pub packages: Vec<LockedPackage>,
    #[serde(default)]
    pub tool: Option<ToolTable>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToolTable {
    #[serde(rename = "lambda-layer", default)]
    pub lambda_layer: Option<LockProvenance>,
}

/// What the lock was made from, so that a build can tell a stale lock.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockProvenance {
    pub requirements: Vec<String>,
    pub python: String,
    pub glibc: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: Option<String>,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub wheels: Vec<LockedWheel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LockedWheel {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
}

impl LockedWheel {
    /// The wheel's file name: `name`, else the last segment of its URL.
    pub fn file_name(&self) -> Option<String> {
        if let Some(name) = &self.name {
            return Some(name.clone());
        }
        let url = self.url.as_deref()?;
        let last = url.split(['?', '#']).next()?.rsplit('/').next()?;
        Some(last.replace("%2B", "+").replace("%2b", "+"))
    }

    pub fn sha256(&self) -> Option<Sha256Hex> {
        self.hashes.get("sha256")?.parse().ok()
    }
}

impl PyLock {
    /// Reads and checks a lock file; errors name the file, the line and what is wrong.
    pub fn load(path: &Utf8Path) -> Result<PyLock> {
        let text = fs_err::read_to_string(path)
            .with_context(|| "reading the lock file (run `cargo xtask lock` to create it)")?;
        PyLock::parse(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))
    }

    pub fn parse(text: &str) -> Result<PyLock, String> {
        let lock: PyLock =
            toml::from_str(text).map_err(|e| crate::spec::format_toml_error(text, &e))?;
        if lock.lock_version.split('.').next() != Some("1") {
            return Err(format!(
                "lock-version `{}` is not supported (expected 1.x)",
                lock.lock_version
            ));
        }
        for (i, pkg) in lock.packages.iter().enumerate() {
            let at = || {
                let line = line_of_package(text, i)
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                format!("{line}package `{}`", pkg.name)
            };
            if pkg.version.is_none() {
                return Err(format!(
                    "{} has no version: every package must be locked to one",
                    at()
                ));
            }
            if pkg.wheels.is_empty() {
                return Err(format!(
                    "{} has no wheels: this tool never builds from source",
                    at()
                ));
            }
            for wheel in &pkg.wheels {
                let name = wheel
                    .file_name()
                    .ok_or_else(|| format!("{} has a wheel with no name or url", at()))?;
                if wheel.sha256().is_none() {
                    return Err(format!(
                        "{}: wheel {name} has no valid sha256 in `hashes`",
                        at()
                    ));
                }
            }
            if let Some(marker) = &pkg.marker {
                crate::lock::marker::parse(marker)
                    .map_err(|e| format!("{}: marker `{marker}`: {e}", at()))?;
            }
        }
        Ok(lock)
    }

    /// Refuses a lock made from other requirements than the spec's.
    pub fn check_fresh(&self, spec: &Spec, path: &Utf8Path) -> Result<()> {
        let Some(prov) = self.tool.as_ref().and_then(|t| t.lambda_layer.as_ref()) else {
            return Ok(());
        };
        let mut want = spec.requirements.packages.clone();
        want.sort();
        let mut have = prov.requirements.clone();
        have.sort();
        if want != have || prov.python != spec.python_xy() || prov.glibc != spec.glibc().to_string()
        {
            bail!(
                "{path} is stale: it was locked for {have:?} on Python {} and glibc {}, the spec asks for {want:?} \
                 on Python {} and glibc {}; run `cargo xtask lock`",
                prov.python,
                prov.glibc,
                spec.python_xy(),
                spec.glibc()
            );
        }
        Ok(())
    }

    /// The packages that apply to `arch`, after evaluating their markers.
    pub fn packages_for(&self, env: &marker::Env) -> Result<Vec<&LockedPackage>> {
        let mut out = Vec::new();
        for pkg in &self.packages {
            let applies = match &pkg.marker {
                Some(m) => marker::evaluate(m, env)
                    .with_context(|| format!("marker of package `{}`", pkg.name))?,
                None => true,
            };
            if applies {
                out.push(pkg);
            }
        }
        Ok(out)
    }
}

fn line_of_package(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[packages]]")
        .nth(index)
        .map(|(i, _)| i + 1)
}

impl crate::flags::Lock {
    pub fn run(self) -> Result<ExitCode> {
        let spec = Spec::load(&self.spec.spec)?;
        let out = spec.lock_path();
        let text = lock_with_uv(&spec)?;
        PyLock::parse(&text)
            .map_err(|e| anyhow::anyhow!("uv wrote a lock this tool cannot read: {e}"))?;
        crate::util::write_bytes_atomic(&out, text.as_bytes())?;
        eprintln!("wrote {out}");
        Ok(ExitCode::SUCCESS)
    }
}

/// Resolves the spec's requirements with uv once per architecture and merges the results
/// into one lock with the wheels of both.
fn lock_with_uv(spec: &Spec) -> Result<String> {
    let uv = which_uv().context("`cargo xtask lock` needs uv: install it with `pip install uv`")?;
    // `uv 0.13.9 (x86_64-unknown-linux-gnu)`: the build machine's triple would make the lock differ by host.
    let uv_version = duct::cmd!(uv.as_str(), "--version")
        .read()
        .unwrap_or_default();
    let uv_version = uv_version.split(" (").next().unwrap_or_default().to_owned();
    let tmp = tempfile::tempdir()?;
    let tmp = crate::util::utf8(tmp.path().to_path_buf())?;
    let req = tmp.join("requirements.in");
    fs_err::write(&req, spec.requirements.packages.join("\n") + "\n")?;
    let constraints = tmp.join("constraints.txt");
    fs_err::write(
        &constraints,
        spec.requirements.constraints.join("\n") + "\n",
    )?;

    let mut per_arch: Vec<(Arch, PyLock)> = Vec::new();
    for arch in Arch::ALL {
        let out = tmp.join(format!("pylock.{}.toml", arch.as_str().replace('_', "")));
        let platform = format!(
            "{}-manylinux_{}_{}",
            arch.machine(),
            spec.glibc().major,
            spec.glibc().minor
        );
        duct::cmd!(
            uv.as_str(),
            "pip",
            "compile",
            &req,
            "--python-version",
            spec.python_xy(),
            "--python-platform",
            &platform,
            "--only-binary",
            ":all:",
            "--constraint",
            &constraints,
            "--format",
            "pylock.toml",
            "--no-header",
            "--quiet",
            "-o",
            &out
        )
        .run()
        .with_context(|| {
            format!(
                "uv could not resolve {:?} for {platform}",
                spec.requirements.packages
            )
        })?;
        let lock = PyLock::load(&out)?;
        per_arch.push((arch, lock));
    }
    Ok(merge_locks(spec, &per_arch, uv_version.trim()))
}

fn which_uv() -> Result<Utf8PathBuf> {
    if let Ok(uv) = std::env::var("UV") {
        return Ok(uv.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':') {
        let candidate = Utf8Path::new(dir).join("uv");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("uv is not on PATH")
}

/// One lock holding, per package, the union of the wheels each architecture chose.
/// A package that only one architecture needs gets a `platform_machine` marker.
fn merge_locks(spec: &Spec, per_arch: &[(Arch, PyLock)], uv_version: &str) -> String {
    struct Merged {
        version: String,
        marker: Option<String>,
        archs: Vec<Arch>,
        wheels: BTreeMap<String, LockedWheel>,
    }
    let mut merged: BTreeMap<(String, String), Merged> = BTreeMap::new();
    for (arch, lock) in per_arch {
        for pkg in &lock.packages {
            let version = pkg.version.clone().unwrap_or_default();
            let entry = merged
                .entry((pkg.name.clone(), version.clone()))
                .or_insert_with(|| Merged {
                    version,
                    marker: pkg.marker.clone(),
                    archs: Vec::new(),
                    wheels: BTreeMap::new(),
                });
            entry.archs.push(*arch);
            for wheel in &pkg.wheels {
                if let Some(name) = wheel.file_name() {
                    entry.wheels.insert(name, wheel.clone());
                }
            }
        }
    }

    let mut out = String::new();
    out.push_str(
        "# Generated by `cargo xtask lock` from layer.toml; edit the spec, not this file.\n",
    );
    let _ = writeln!(out, "lock-version = \"1.0\"");
    let _ = writeln!(out, "created-by = \"cargo xtask lock ({uv_version})\"");
    let _ = writeln!(out, "requires-python = \"=={}.*\"", spec.python_xy());
    let _ = writeln!(
        out,
        "environments = [{}]",
        Arch::ALL
            .iter()
            .map(|a| format!(
                "\"sys_platform == 'linux' and platform_machine == '{}'\"",
                a.machine()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for ((name, _), m) in &merged {
        out.push_str("\n[[packages]]\n");
        let _ = writeln!(out, "name = \"{name}\"");
        let _ = writeln!(out, "version = \"{}\"", m.version);
        let marker = if m.archs.len() == per_arch.len() {
            m.marker.clone()
        } else {
            let only = m
                .archs
                .iter()
                .map(|a| format!("platform_machine == '{}'", a.machine()))
                .collect::<Vec<_>>();
            let only = only.join(" or ");
            Some(match &m.marker {
                Some(existing) => format!("({existing}) and ({only})"),
                None => only,
            })
        };
        if let Some(marker) = marker {
            let _ = writeln!(out, "marker = \"{marker}\"");
        }
        out.push_str("wheels = [\n");
        for (file, wheel) in &m.wheels {
            let sha = wheel.hashes.get("sha256").cloned().unwrap_or_default();
            let url = wheel.url.clone().unwrap_or_default();
            let size = wheel
                .size
                .map(|s| format!(", size = {s}"))
                .unwrap_or_default();
            let _ = writeln!(out, "    {{ name = \"{file}\", url = \"{url}\"{size}, hashes = {{ sha256 = \"{sha}\" }} }},");
        }
        out.push_str("]\n");
    }
    out.push_str("\n[tool.lambda-layer]\n");
    let reqs = spec
        .requirements
        .packages
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "requirements = [{reqs}]");
    let _ = writeln!(out, "python = \"{}\"", spec.python_xy());
    let _ = writeln!(out, "glibc = \"{}\"", spec.glibc());
    out
}

/// PEP 508 environment markers: just enough to evaluate what resolvers write into locks.
pub mod marker {
    use anyhow::{bail, Result};

    /// The target environment markers are evaluated against.
    #[derive(Debug, Clone)]
    pub struct Env {
        pub machine: String,
        pub python_version: String,
        pub python_full_version: String,
    }

    impl Env {
        fn get(&self, var: &str) -> Result<String> {
            Ok(match var {
                "platform_machine" => self.machine.clone(),
                "sys_platform" => "linux".into(),
                "platform_system" => "Linux".into(),
                "os_name" => "posix".into(),
                "implementation_name" => "cpython".into(),
                "platform_python_implementation" => "CPython".into(),
                "python_version" => self.python_version.clone(),
                "python_full_version" | "implementation_version" => {
                    self.python_full_version.clone()
                }
                "extra" => String::new(),
                "platform_release" | "platform_version" => String::new(),
                other => bail!("unknown marker variable `{other}`"),
            })
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Ident(String),
        Str(String),
        Op(String),
        LParen,
        RParen,
        And,
        Or,
    }

    fn tokenize(s: &str) -> Result<Vec<Tok>> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut out = Vec::new();
        while i < b.len() {
            let c = b[i] as char;
            if c.is_whitespace() {
                i += 1;
            } else if c == '(' {
                out.push(Tok::LParen);
                i += 1;
            } else if c == ')' {
                out.push(Tok::RParen);
                i += 1;
            } else if c == '\'' || c == '"' {
                let end = s[i + 1..].find(c).map(|e| e + i + 1);
                let Some(end) = end else {
                    bail!("unterminated string")
                };
                out.push(Tok::Str(s[i + 1..end].to_owned()));
                i = end + 1;
            } else if "=!<>~".contains(c) {
                let start = i;
                while i < b.len() && "=!<>~".contains(b[i] as char) {
                    i += 1;
                }
                out.push(Tok::Op(s[start..i].to_owned()));
            } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                let start = i;
                while i < b.len()
                    && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                let word = &s[start..i];
                out.push(match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "in" => Tok::Op("in".into()),
                    "not" => Tok::Op("not".into()),
                    _ => Tok::Ident(word.to_owned()),
                });
            } else {
                bail!("unexpected character `{c}`");
            }
        }
        // `not in` is one operator.
        let mut merged = Vec::new();
        let mut it = out.into_iter().peekable();
        while let Some(t) = it.next() {
            if t == Tok::Op("not".into()) {
                if it.peek() == Some(&Tok::Op("in".into())) {
                    it.next();
                    merged.push(Tok::Op("not in".into()));
                    continue;
                }
                bail!("`not` must be followed by `in`");
            }
            merged.push(t);
        }
        Ok(merged)
    }

    #[derive(Debug)]
    enum Expr {
        And(Box<Expr>, Box<Expr>),
        Or(Box<Expr>, Box<Expr>),
        Cmp {
            lhs: Operand,
            op: String,
            rhs: Operand,
        },
    }

    #[derive(Debug)]
    enum Operand {
        Var(String),
        Lit(String),
    }

    struct Parser {
        toks: Vec<Tok>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos)
        }
        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).cloned();
            self.pos += 1;
            t
        }
        fn or(&mut self) -> Result<Expr> {
            let mut lhs = self.and()?;
            while self.peek() == Some(&Tok::Or) {
                self.next();
                lhs = Expr::Or(Box::new(lhs), Box::new(self.and()?));
            }
            Ok(lhs)
        }
        fn and(&mut self) -> Result<Expr> {
            let mut lhs = self.atom()?;
            while self.peek() == Some(&Tok::And) {
                self.next();
                lhs = Expr::And(Box::new(lhs), Box::new(self.atom()?));
            }
            Ok(lhs)
        }
        fn atom(&mut self) -> Result<Expr> {
            if self.peek() == Some(&Tok::LParen) {
                self.next();
                let e = self.or()?;
                if self.next() != Some(Tok::RParen) {
                    bail!("missing `)`");
                }
                return Ok(e);
            }
            let lhs = self.operand()?;
            let op = match self.next() {
                Some(Tok::Op(op)) => op,
                other => bail!("expected a comparison operator, found {other:?}"),
            };
            if ![
                "==", "!=", "<", "<=", ">", ">=", "~=", "===", "in", "not in",
            ]
            .contains(&op.as_str())
            {
                bail!("unknown operator `{op}`");
            }
            let rhs = self.operand()?;
            Ok(Expr::Cmp { lhs, op, rhs })
        }
        fn operand(&mut self) -> Result<Operand> {
            match self.next() {
                Some(Tok::Ident(v)) => Ok(Operand::Var(v)),
                Some(Tok::Str(s)) => Ok(Operand::Lit(s)),
                other => bail!("expected a variable or a string, found {other:?}"),
            }
        }
    }

    fn parse_expr(s: &str) -> Result<Expr> {
        let mut p = Parser {
            toks: tokenize(s)?,
            pos: 0,
        };
        let e = p.or()?;
        if p.pos != p.toks.len() {
            bail!("unexpected trailing text");
        }
        Ok(e)
    }

    /// Checks that a marker parses.
    pub fn parse(s: &str) -> Result<()> {
        parse_expr(s).map(|_| ())
    }

    fn version_key(v: &str) -> Vec<u64> {
        v.split('.')
            .map(|p| {
                p.trim_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn eval(e: &Expr, env: &Env) -> Result<bool> {
        Ok(match e {
            Expr::And(a, b) => eval(a, env)? && eval(b, env)?,
            Expr::Or(a, b) => eval(a, env)? || eval(b, env)?,
            Expr::Cmp { lhs, op, rhs } => {
                let is_version = |o: &Operand| matches!(o, Operand::Var(v) if v.contains("version") && v != "platform_version");
                let versions = is_version(lhs) || is_version(rhs);
                let get = |o: &Operand| -> Result<String> {
                    match o {
                        Operand::Var(v) => env.get(v),
                        Operand::Lit(s) => Ok(s.clone()),
                    }
                };
                let (l, r) = (get(lhs)?, get(rhs)?);
                match op.as_str() {
                    "in" => r.contains(&l),
                    "not in" => !r.contains(&l),
                    _ if versions => {
                        let (a, b) = (version_key(&l), version_key(&r));
                        match op.as_str() {
                            "==" | "===" => {
                                if r.ends_with(".*") {
                                    a.starts_with(&b[..b.len().saturating_sub(1)])
                                } else {
                                    a == b
                                }
                            }
                            "!=" => a != b,
                            "<" => a < b,
                            "<=" => a <= b,
                            ">" => a > b,
                            ">=" => a >= b,
                            "~=" => a >= b && a.first() == b.first(),
                            _ => false,
                        }
                    }
                    "==" | "===" => l == r,
                    "!=" => l != r,
                    _ => bail!("operator `{op}` needs versions"),
                }
            }
        })
    }

    /// Evaluates a marker against the target environment.
    pub fn evaluate(s: &str, env: &Env) -> Result<bool> {
        eval(&parse_expr(s)?, env)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn env(machine: &str) -> Env {
            Env {
                machine: machine.into(),
                python_version: "3.11".into(),
                python_full_version: "3.11.16".into(),
            }
        }

        #[test]
        fn evaluates_what_uv_writes() {
            let hf = "platform_machine == 'AMD64' or platform_machine == 'ARM64' or platform_machine == 'aarch64' \
                      or platform_machine == 'amd64' or platform_machine == 'arm64' or platform_machine == 'x86_64'";
            assert!(evaluate(hf, &env("x86_64")).unwrap());
            assert!(evaluate(hf, &env("aarch64")).unwrap());
            assert!(!evaluate(hf, &env("ppc64le")).unwrap());
            assert!(evaluate("sys_platform != 'emscripten'", &env("x86_64")).unwrap());
            assert!(!evaluate("sys_platform == 'win32'", &env("x86_64")).unwrap());
            assert!(evaluate("python_full_version < '3.12'", &env("x86_64")).unwrap());
            assert!(!evaluate("python_version >= \"3.13\"", &env("x86_64")).unwrap());
            assert!(evaluate(
                "(python_version < '3.12' and sys_platform == 'linux') or extra == 'x'",
                &env("x")
            )
            .unwrap());
            assert!(!evaluate("extra == 'proxy'", &env("x86_64")).unwrap());
            assert!(evaluate("'linux' in sys_platform", &env("x86_64")).unwrap());
            assert!(evaluate(
                "platform_python_implementation not in 'PyPy'",
                &env("x86_64")
            )
            .unwrap());
        }

        #[test]
        fn refuses_nonsense() {
            assert!(parse("platform_machine = 'x'").is_err());
            assert!(parse("(sys_platform == 'linux'").is_err());
            assert!(evaluate("frobnicate == 'x'", &env("x86_64")).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"lock-version = "1.0"
created-by = "test"

[[packages]]
name = "zipp"
version = "4.1.2"
wheels = [{ url = "https://files.example/zipp-4.1.2-py3-none-any.whl", hashes = { sha256 = "b30cb6cd253122169c47de245ca24a86bac2a5d3802ba15bf7ba6414eb9e144d" } }]

[[packages]]
name = "hf-xet"
version = "1.8.0"
marker = "platform_machine == 'x86_64'"
wheels = [{ name = "hf_xet-1.8.0-cp38-abi3-manylinux2014_x86_64.whl", url = "https://x/y", hashes = { sha256 = "29dab7c904cd1914a0439c6e1306c12c7497c8bd32290fbe563ebf51ca4b6d6d" } }]
"#;

    #[test]
    fn reads_a_lock_and_applies_markers() {
        let lock = PyLock::parse(LOCK).unwrap();
        assert_eq!(lock.packages.len(), 2);
        assert_eq!(
            lock.packages[0].wheels[0].file_name().unwrap(),
            "zipp-4.1.2-py3-none-any.whl"
        );
        let env = |m: &str| marker::Env {
            machine: m.into(),
            python_version: "3.11".into(),
            python_full_version: "3.11.16".into(),
        };
        assert_eq!(lock.packages_for(&env("x86_64")).unwrap().len(), 2);
        assert_eq!(lock.packages_for(&env("aarch64")).unwrap().len(), 1);
    }

    #[test]
    fn malformed_locks_name_the_line() {
        let no_hash = LOCK.replace("hashes = { sha256 = \"b30c", "hashes = { md5 = \"b30c");
        let err = PyLock::parse(&no_hash).unwrap_err();
        assert!(
            err.starts_with("line 4: package `zipp`") && err.contains("sha256"),
            "{err}"
        );

        let no_version = LOCK.replace("version = \"1.8.0\"\n", "");
        let err = PyLock::parse(&no_version).unwrap_err();
        assert!(
            err.starts_with("line 9: package `hf-xet` has no version"),
            "{err}"
        );

        let bad_marker = LOCK.replace("platform_machine == 'x86_64'", "platform_machine === ");
        assert!(PyLock::parse(&bad_marker).unwrap_err().contains("marker"));

        let broken = LOCK.replace("version = \"4.1.2\"", "version = 4.1.2");
        assert!(PyLock::parse(&broken).unwrap_err().starts_with("line 6,"));
    }

    #[test]
    fn the_repository_lock_is_valid_and_fresh() {
        let root = crate::util::project_root();
        let spec = Spec::load(&root.join("layer/layer.toml")).unwrap();
        let lock = PyLock::load(&spec.lock_path()).unwrap();
        lock.check_fresh(&spec, &spec.lock_path()).unwrap();
        let litellm = lock
            .packages
            .iter()
            .find(|p| p.name == "litellm")
            .expect("litellm is locked");
        assert_eq!(litellm.version.as_deref(), Some("1.78.7"));
        assert!(
            lock.packages.iter().any(|p| p.name == "openai"),
            "openai is locked"
        );
    }
}
