//! Which Python to run, and why.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{LayerPython, LAYER_ROOT};

/// Environment variable naming the interpreter to use when no explicit path is given.
pub const PYTHON_ENV_VAR: &str = "PYTHONEXEC_PYTHON";

/// Environment variables whose presence means "running inside AWS Lambda".
const LAMBDA_MARKERS: [&str; 2] = ["AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"];

/// How the interpreter was chosen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Choice {
    /// The caller passed a path.
    Explicit,
    /// `PYTHONEXEC_PYTHON` was set.
    EnvVar,
    /// Inside Lambda (`marker` is the variable that said so): the layer's interpreter,
    /// found as `layer` says (`"python_version 3.11.7 in /opt/python/layer-manifest.json"`).
    Lambda { marker: String, layer: String },
    /// Nothing else applied: `python3` on `PATH`.
    Path,
}

/// An interpreter to run, the environment it needs, and the reason it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The program to start: a path, or a bare name looked up on `PATH`.
    pub program: PathBuf,
    /// Variables set on the child (on top of the inherited environment).
    pub env: Vec<(OsString, OsString)>,
    pub choice: Choice,
}

impl Interpreter {
    /// An explicit interpreter path wins; else `PYTHONEXEC_PYTHON`; else inside Lambda the
    /// layer's interpreter (see [`LayerPython::find`]) with `PYTHONHOME`/`PYTHONPATH`; else
    /// `python3` on `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Interpreter {
        choose(explicit, |name| std::env::var_os(name))
    }

    /// Use this program, with no extra environment.
    pub fn explicit(program: impl Into<PathBuf>) -> Interpreter {
        Interpreter {
            program: program.into(),
            env: Vec::new(),
            choice: Choice::Explicit,
        }
    }

    /// Why this interpreter: `"chosen because PYTHONEXEC_PYTHON is set"`.
    pub fn reason(&self) -> String {
        match &self.choice {
            Choice::Explicit => "given explicitly".to_owned(),
            Choice::EnvVar => format!("{PYTHON_ENV_VAR} is set"),
            Choice::Lambda { marker, layer } => {
                format!("inside Lambda ({marker} is set): the layer's interpreter, from {layer}")
            }
            Choice::Path => format!(
                "no explicit path, {PYTHON_ENV_VAR} unset, not inside Lambda: python3 on PATH"
            ),
        }
    }

    /// Check the interpreter exists and is executable; return the file that will run.
    pub fn resolve(&self) -> Result<PathBuf> {
        let found = if self.program.components().count() > 1 {
            Some(self.program.clone())
        } else {
            find_on_path(
                self.program.as_os_str(),
                std::env::var_os("PATH").as_deref(),
            )
        };
        let Some(path) = found else {
            return Err(self.not_found());
        };
        match std::fs::metadata(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(self.not_found()),
            Err(err) => Err(Error::InterpreterNotExecutable {
                interpreter: self.to_string(),
                source: Some(err),
            }),
            Ok(meta) if !meta.is_file() || !is_executable(&meta) => {
                Err(Error::InterpreterNotExecutable {
                    interpreter: self.to_string(),
                    source: None,
                })
            }
            Ok(_) => Ok(path),
        }
    }

    /// "Not found", with what to do about it: under a local Lambda emulator (which sets
    /// `AWS_LAMBDA_FUNCTION_NAME` but has no `/opt/python`) that is setting `PYTHONEXEC_PYTHON`.
    pub(crate) fn not_found(&self) -> Error {
        let hint = match &self.choice {
            Choice::Lambda { .. } => format!(
                "; no layer here: add the python-litellm layer to the function, or, outside AWS \
                 (e.g. under `cargo lambda watch`, which sets AWS_LAMBDA_FUNCTION_NAME), set \
                 {PYTHON_ENV_VAR} to a python3, e.g. the interpreter of a layer tree built by \
                 `cargo xtask layer` (<out>/tree/python/bin/python3)"
            ),
            Choice::EnvVar => format!("; {PYTHON_ENV_VAR} names a file that does not exist"),
            Choice::Explicit | Choice::Path => String::new(),
        };
        Error::InterpreterNotFound {
            interpreter: self.to_string(),
            hint,
        }
    }

    /// A `tokio` command for this interpreter with its environment applied.
    pub(crate) fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.program.display(), self.reason())
    }
}

/// The decision, with the environment as a parameter so it is testable.
pub fn choose(explicit: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Interpreter {
    choose_in(explicit, env, Path::new(LAYER_ROOT))
}

/// [`choose`] with the layer unpacked at `layer_root` instead of `/opt`.
pub fn choose_in(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    layer_root: &Path,
) -> Interpreter {
    if let Some(path) = explicit {
        return Interpreter::explicit(path);
    }
    if let Some(path) = env(PYTHON_ENV_VAR).filter(|v| !v.is_empty()) {
        return Interpreter {
            program: PathBuf::from(path),
            env: Vec::new(),
            choice: Choice::EnvVar,
        };
    }
    if let Some(marker) = LAMBDA_MARKERS
        .iter()
        .find(|name| env(name).is_some_and(|v| !v.is_empty()))
    {
        let layer = LayerPython::find(layer_root);
        return Interpreter {
            env: layer.env(),
            program: layer.program,
            choice: Choice::Lambda {
                marker: (*marker).to_owned(),
                layer: layer.found_by,
            },
        };
    }
    Interpreter {
        program: PathBuf::from("python3"),
        env: Vec::new(),
        choice: Choice::Path,
    }
}

fn find_on_path(name: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && is_executable(&m))
        })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn explicit_wins_over_everything() {
        let i = choose(
            Some(Path::new("/x/python")),
            env_of(&[
                (PYTHON_ENV_VAR, "/y/python"),
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ]),
        );
        assert_eq!(i.program, PathBuf::from("/x/python"));
        assert_eq!(i.choice, Choice::Explicit);
    }

    #[test]
    fn env_var_wins_over_lambda() {
        let i = choose(
            None,
            env_of(&[
                (PYTHON_ENV_VAR, "/y/python"),
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ]),
        );
        assert_eq!(i.program, PathBuf::from("/y/python"));
        assert_eq!(i.choice, Choice::EnvVar);
        assert!(i.env.is_empty());
    }

    #[test]
    fn lambda_uses_the_layer_with_its_environment() {
        let root = tempfile::tempdir().expect("tempdir");
        let python = root.path().join("python");
        std::fs::create_dir_all(python.join("bin")).expect("mkdir");
        std::fs::write(python.join("bin/python3.13"), "").expect("write");
        std::fs::write(
            root.path().join(crate::layer::LAYER_MANIFEST),
            r#"{"python_version": "3.13.1"}"#,
        )
        .expect("write");
        let i = choose_in(
            None,
            env_of(&[("LAMBDA_TASK_ROOT", "/var/task")]),
            root.path(),
        );
        assert_eq!(i.program, python.join("bin/python3.13"));
        assert!(i.env.contains(&(
            OsString::from("PYTHONHOME"),
            python.clone().into_os_string()
        )));
        assert!(i.env.contains(&(
            OsString::from("PYTHONPATH"),
            python.join("lib/python3.13").into_os_string()
        )));
        let shown = i.to_string();
        assert!(shown.contains("LAMBDA_TASK_ROOT"), "{shown}");
        assert!(shown.contains("python_version 3.13.1"), "{shown}");
    }

    #[test]
    fn lambda_without_a_layer_says_to_set_the_env_var() {
        let root = tempfile::tempdir().expect("tempdir");
        let i = choose_in(
            None,
            env_of(&[("AWS_LAMBDA_FUNCTION_NAME", "_")]),
            root.path(),
        );
        assert_eq!(i.program, root.path().join("python/bin/python3"));
        let err = i.resolve().expect_err("no layer");
        assert!(matches!(err, Error::InterpreterNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("set PYTHONEXEC_PYTHON"), "{text}");
        assert!(text.contains("cargo lambda watch"), "{text}");
    }

    #[test]
    fn otherwise_python3_on_path() {
        let i = choose(None, env_of(&[(PYTHON_ENV_VAR, "")]));
        assert_eq!(i.program, PathBuf::from("python3"));
        assert_eq!(i.choice, Choice::Path);
    }

    #[test]
    fn missing_interpreter_is_not_found_and_says_why() {
        let i = Interpreter::explicit("/nonexistent/python3.11");
        let err = i.resolve().expect_err("must fail");
        assert!(matches!(err, Error::InterpreterNotFound { .. }));
        assert!(err.to_string().contains("given explicitly"));
    }

    #[test]
    fn non_executable_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("python");
        std::fs::write(&file, "").expect("write");
        let err = Interpreter::explicit(&file)
            .resolve()
            .expect_err("must fail");
        assert!(matches!(err, Error::InterpreterNotExecutable { .. }));
    }
}
