//! Progress on a terminal, plain lines in CI or when output is not a terminal.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on a terminal; plain lines in CI (`CI=true`) or when stderr is not a terminal.
    pub fn new() -> Progress {
        if crate::util::plain_output() {
            Progress { multi: None }
        } else {
            Progress {
                multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            }
        }
    }

    /// Prints one line to stderr, above any bars.
    pub fn line(&self, msg: impl AsRef<str>) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg.as_ref());
            }
            None => eprintln!("{}", msg.as_ref()),
        }
    }

    /// A bar counting `len` units (bytes when `bytes`); a no-op in plain mode.
    pub fn bar(&self, len: u64, msg: impl Into<String>, bytes: bool) -> ProgressBar {
        let Some(multi) = &self.multi else {
            return ProgressBar::hidden();
        };
        let template = if bytes {
            "{spinner} {msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
        } else {
            "{spinner} {msg:30!} [{bar:30}] {pos}/{len}"
        };
        let bar = multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(msg.into());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
