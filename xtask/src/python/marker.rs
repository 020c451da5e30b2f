//! PEP 508 environment markers: just enough to evaluate what resolvers write into locks.

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
            "python_full_version" | "implementation_version" => self.python_full_version.clone(),
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
