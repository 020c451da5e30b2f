//! Downloads into a content-addressed cache: hashed while streaming, renamed into place
//! only after the hash matched. Accepts `http(s)://` and `file://` URLs and plain paths.

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use sha2::{Digest, Sha256};

mod source;

use source::{check_name, parse_source, Source};

use crate::spec::Sha256Hex;
use crate::util::progress::Progress;

/// How many times a download is tried when the network fails (not when the hash is wrong).
const ATTEMPTS: u32 = 3;

/// Fetches files into the cache. Safe to share between threads and between processes.
pub struct Fetcher {
    pub cache: Utf8PathBuf,
    pub offline: bool,
    pub progress: Progress,
    /// Built on first use so that offline and file-only runs never set up TLS.
    agent: OnceLock<ureq::Agent>,
}

/// A download whose bytes are not the ones pinned; callers that know where the pin comes from
/// (a lock file) find it with `downcast_ref` and say so.
#[derive(Debug)]
pub struct HashMismatch {
    pub source: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for HashMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} does not have the expected sha256\n  expected: {}\n  actual:   {}",
            self.source, self.expected, self.actual
        )
    }
}

impl std::error::Error for HashMismatch {}

/// Why one download attempt failed: only network trouble is worth another try.
enum Failure {
    Transient(anyhow::Error),
    Fatal(anyhow::Error),
}

impl Fetcher {
    pub fn new(offline: bool, progress: Progress) -> Result<Fetcher> {
        Ok(Fetcher::with_cache(
            crate::core::cache_dir(),
            offline,
            progress,
        ))
    }

    /// A fetcher whose cache is `cache` instead of the user's cache folder.
    pub fn with_cache(cache: Utf8PathBuf, offline: bool, progress: Progress) -> Fetcher {
        Fetcher {
            cache,
            offline,
            progress,
            agent: OnceLock::new(),
        }
    }

    /// Returns the path of a cached file named `file_name` whose sha256 is `expected`,
    /// fetching it from `source` (URL or path) when the cache lacks it or holds bad bytes.
    /// `kind` is the cache subfolder (`python`, `wheels`).
    pub fn fetch(
        &self,
        source: &str,
        file_name: &str,
        expected: &Sha256Hex,
        kind: &str,
    ) -> Result<Utf8PathBuf> {
        check_name(file_name, "file name")?;
        check_name(kind, "cache kind")?;
        let dir = self.cache.join(kind).join(expected.as_str());
        let path = dir.join(file_name);

        if path.is_file() {
            let actual = crate::util::sha256_file(&path)?;
            if actual == expected.as_str() {
                return Ok(path);
            }
            // Another process may have removed or replaced it meanwhile; either is fine.
            match fs_err::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err.into()),
            }
            if self.offline {
                bail!(
                    "cache entry {path} was corrupt (sha256 {actual}, expected {expected}) and is removed; --offline forbids fetching it again from {source}: build once without --offline"
                );
            }
            self.progress.line(format!(
                "cache entry {path} is corrupt (sha256 {actual}, expected {expected}): fetching it again"
            ));
        }

        if self.offline {
            bail!("{file_name} is not in the cache ({dir}) and --offline forbids fetching it from {source}");
        }

        let parsed = parse_source(source)?;
        fs_err::create_dir_all(&dir)?;
        let mut attempt = 1;
        let (tmp, actual) = loop {
            // A temporary file in the final folder: the rename below is then atomic, and
            // two processes fetching the same file never write into the same temporary.
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{file_name}."))
                .suffix(".part")
                .tempfile_in(&dir)
                .with_context(|| format!("creating a temporary file in {dir}"))?;
            match self.copy_into(&parsed, source, file_name, tmp.as_file()) {
                Ok(actual) => break (tmp, actual),
                Err(Failure::Transient(err)) if attempt < ATTEMPTS => {
                    self.progress.line(format!(
                        "{err:#}; trying again ({}/{ATTEMPTS})",
                        attempt + 1
                    ));
                    std::thread::sleep(Duration::from_secs(u64::from(attempt)));
                    attempt += 1;
                }
                Err(Failure::Transient(err) | Failure::Fatal(err)) => return Err(err),
            }
        };

        if actual != expected.as_str() {
            // `tmp` is deleted when dropped: nothing is left in the cache.
            drop(tmp);
            return Err(HashMismatch {
                source: source.to_owned(),
                expected: expected.to_string(),
                actual,
            }
            .into());
        }

        // Cached files are shared with other users of the cache; tempfile creates them 0600.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the permissions of a temporary file in {dir}"))?;
        // A concurrent process renaming identical bytes onto the same name is harmless.
        tmp.persist(&path)
            .with_context(|| format!("moving the download into {path}"))?;
        Ok(path)
    }

    /// Copies `source` into `out` while hashing it; returns the hex sha256.
    fn copy_into(
        &self,
        parsed: &Source,
        source: &str,
        file_name: &str,
        out: &std::fs::File,
    ) -> Result<String, Failure> {
        match parsed {
            Source::Path(path) => {
                let mut file = fs_err::File::open(path)
                    .with_context(|| format!("opening {source}"))
                    .map_err(Failure::Fatal)?;
                copy_hashing(&mut file, out, source, None)
            }
            Source::Http(url) => {
                self.progress.line(format!("downloading {url}"));
                let response = match self.agent().get(url).call() {
                    Ok(response) => response,
                    Err(ureq::Error::StatusCode(status)) => {
                        let err =
                            anyhow::anyhow!("downloading {url}: the server answered HTTP {status}");
                        // Rate limits and server trouble pass; a 404 does not.
                        return Err(if status == 429 || status >= 500 {
                            Failure::Transient(err)
                        } else {
                            Failure::Fatal(err)
                        });
                    }
                    Err(err) => {
                        let transient = matches!(
                            err,
                            ureq::Error::Io(_)
                                | ureq::Error::Timeout(_)
                                | ureq::Error::HostNotFound
                                | ureq::Error::ConnectionFailed
                                | ureq::Error::Protocol(_)
                        );
                        let err = anyhow::Error::new(err).context(format!("downloading {url}"));
                        return Err(if transient {
                            Failure::Transient(err)
                        } else {
                            Failure::Fatal(err)
                        });
                    }
                };
                let len = response.body().content_length().unwrap_or(0);
                let bar = self.progress.bar(len, file_name.to_owned(), true);
                let mut reader = response.into_body().into_reader();
                let result = copy_hashing(&mut reader, out, url, Some(&bar));
                bar.finish_and_clear();
                result
            }
        }
    }

    fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let tls = ureq::tls::TlsConfig::builder()
                // The system store: inspecting proxies add their CA there, not to webpki's list.
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build();
            ureq::Agent::config_builder()
                .tls_config(tls)
                .user_agent(concat!(
                    "lambda-python-layer-xtask/",
                    env!("CARGO_PKG_VERSION")
                ))
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                // Per read, not overall: a 40 MB archive on a slow link may take minutes.
                .timeout_per_read(Some(Duration::from_secs(60)))
                .build()
                .new_agent()
        })
    }
}

/// Streams `reader` into `out`, hashing as it goes. Read errors are transient (network),
/// write errors are not (disk).
fn copy_hashing(
    reader: &mut dyn Read,
    out: &std::fs::File,
    what: &str,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<String, Failure> {
    let mut hasher = Sha256::new();
    let mut writer = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(Failure::Transient(
                    anyhow::Error::new(err).context(format!("reading {what}")),
                ))
            }
        };
        hasher.update(&buf[..n]);
        writer
            .write_all(&buf[..n])
            .context("writing into the cache")
            .map_err(Failure::Fatal)?;
        if let Some(bar) = bar {
            bar.inc(n as u64);
        }
    }
    writer
        .flush()
        .context("writing into the cache")
        .map_err(Failure::Fatal)?;
    Ok(hex::encode(hasher.finalize()))
}

// Wheels are fetched from several threads sharing one fetcher.
const _: () = {
    const fn is_sync<T: Sync + Send>() {}
    is_sync::<Fetcher>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn sha(bytes: &[u8]) -> Sha256Hex {
        crate::util::sha256_hex(bytes).parse().expect("a sha256")
    }

    fn setup(content: &[u8]) -> (tempfile::TempDir, Utf8PathBuf, Fetcher) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        let src = root.join("src dir").join("a+b.tar.gz");
        fs_err::create_dir_all(src.parent().expect("parent")).expect("mkdir");
        fs_err::write(&src, content).expect("write");
        let fetcher = Fetcher::with_cache(root.join("cache"), false, Progress::new());
        (tmp, src, fetcher)
    }

    /// A cache entry for `a.tar.gz` of kind `python` whose bytes do not match `hash`.
    fn plant_corrupt_entry(fetcher: &Fetcher, hash: &Sha256Hex) -> Utf8PathBuf {
        let cached = fetcher
            .cache
            .join("python")
            .join(hash.as_str())
            .join("a.tar.gz");
        fs_err::create_dir_all(cached.parent().expect("parent")).expect("mkdir");
        fs_err::write(&cached, b"garbage").expect("write");
        cached
    }

    fn files_under(dir: &Utf8Path) -> Vec<String> {
        if !dir.exists() {
            return Vec::new();
        }
        crate::util::walk(dir)
            .expect("walk")
            .into_iter()
            .filter(|e| e.file_type.is_file())
            .map(|e| e.rel.to_string())
            .collect()
    }

    #[test]
    fn plain_path_and_file_url() {
        let (_tmp, src, fetcher) = setup(b"hello");
        let hash = sha(b"hello");
        let got = fetcher
            .fetch(src.as_str(), "a.tar.gz", &hash, "python")
            .expect("fetch path");
        assert_eq!(
            got,
            fetcher
                .cache
                .join("python")
                .join(hash.as_str())
                .join("a.tar.gz")
        );
        assert_eq!(fs_err::read(&got).expect("read"), b"hello");

        let url = format!(
            "file://{}",
            src.as_str().replace(' ', "%20").replace('+', "%2B")
        );
        let got2 = fetcher
            .fetch(&url, "b.tar.gz", &hash, "python")
            .expect("fetch file url");
        assert_eq!(fs_err::read(&got2).expect("read"), b"hello");
        // No temporaries left behind.
        assert_eq!(files_under(&fetcher.cache).len(), 2);
    }

    #[test]
    fn hash_mismatch_leaves_nothing() {
        let (_tmp, src, fetcher) = setup(b"hello");
        let wrong = sha(b"something else");
        let err = fetcher
            .fetch(src.as_str(), "a.tar.gz", &wrong, "python")
            .expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains(src.as_str()), "{msg}");
        assert!(msg.contains(wrong.as_str()), "{msg}");
        assert!(msg.contains(&crate::util::sha256_hex(b"hello")), "{msg}");
        assert_eq!(files_under(&fetcher.cache), Vec::<String>::new());
    }

    #[test]
    fn corrupt_cache_entry_is_fetched_again() {
        let (_tmp, src, fetcher) = setup(b"hello");
        let hash = sha(b"hello");
        let cached = plant_corrupt_entry(&fetcher, &hash);
        let got = fetcher
            .fetch(src.as_str(), "a.tar.gz", &hash, "python")
            .expect("fetch");
        assert_eq!(got, cached);
        assert_eq!(fs_err::read(&got).expect("read"), b"hello");
    }

    #[test]
    fn offline_with_a_corrupt_cache_entry_says_once_what_to_do() {
        let (_tmp, src, mut fetcher) = setup(b"hello");
        fetcher.offline = true;
        let hash = sha(b"hello");
        let cached = plant_corrupt_entry(&fetcher, &hash);
        let err = fetcher
            .fetch(src.as_str(), "a.tar.gz", &hash, "python")
            .expect_err("offline cannot fetch it again");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("corrupt") && msg.contains(cached.as_str()),
            "{msg}"
        );
        assert!(msg.contains("without --offline"), "{msg}");
        assert!(!msg.contains("not in the cache"), "{msg}");
        assert!(!cached.exists(), "the corrupt entry is removed");
    }

    #[test]
    fn offline_miss_names_file_and_cache() {
        let (_tmp, src, mut fetcher) = setup(b"hello");
        fetcher.offline = true;
        let err = fetcher
            .fetch(src.as_str(), "a.tar.gz", &sha(b"hello"), "python")
            .expect_err("must fail");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("a.tar.gz") && msg.contains("not in the cache"),
            "{msg}"
        );
        assert!(msg.contains(fetcher.cache.as_str()), "{msg}");

        // Once cached, offline works.
        fetcher.offline = false;
        fetcher
            .fetch(src.as_str(), "a.tar.gz", &sha(b"hello"), "python")
            .expect("fetch");
        fetcher.offline = true;
        fetcher
            .fetch(
                "https://example.invalid/a.tar.gz",
                "a.tar.gz",
                &sha(b"hello"),
                "python",
            )
            .expect("cached");
    }

    #[test]
    fn bad_names_and_schemes_are_refused() {
        let (_tmp, src, fetcher) = setup(b"hello");
        let hash = sha(b"hello");
        assert!(fetcher
            .fetch(src.as_str(), "../x", &hash, "python")
            .is_err());
        assert!(fetcher.fetch(src.as_str(), "x", &hash, "..").is_err());
        let err = fetcher
            .fetch("ftp://host/x", "x", &hash, "python")
            .expect_err("scheme");
        assert!(format!("{err:#}").contains("ftp"));
        let err = fetcher
            .fetch("/does/not/exist.tar.gz", "x", &hash, "python")
            .expect_err("missing");
        assert!(format!("{err:#}").contains("/does/not/exist.tar.gz"));
    }

    /// Serves `body` at `/ok` and 404 elsewhere, counting requests.
    fn serve(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind loopback");
        let port = server.server_addr().to_ip().expect("ip address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = if request.url() == "/ok" {
                    tiny_http::Response::from_data(body).with_status_code(200)
                } else {
                    tiny_http::Response::from_data(&b"no"[..]).with_status_code(404)
                };
                let _ = request.respond(response);
            }
        });
        (format!("http://127.0.0.1:{port}"), hits)
    }

    #[test]
    fn http_download_then_cache_reuse() {
        static BODY: [u8; 200_000] = [7u8; 200_000];
        let (base, hits) = serve(&BODY);
        let (_tmp, _src, fetcher) = setup(b"");
        let hash = sha(&BODY);
        let url = format!("{base}/ok");
        let got = fetcher
            .fetch(&url, "w.whl", &hash, "wheels")
            .expect("http fetch");
        assert_eq!(fs_err::read(&got).expect("read"), BODY);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Several threads at once: all served from the cache, no new request.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    fetcher
                        .fetch(&url, "w.whl", &hash, "wheels")
                        .expect("cached fetch")
                });
            }
        });
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let err = fetcher
            .fetch(&format!("{base}/missing"), "m.whl", &hash, "wheels")
            .expect_err("404");
        let msg = format!("{err:#}");
        assert!(msg.contains("/missing") && msg.contains("404"), "{msg}");
        // A 404 is not retried.
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn transient_server_error_is_retried_but_hash_mismatch_is_not() {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind loopback");
        let port = server.server_addr().to_ip().expect("ip address").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                // The first request fails like an overloaded server; later ones succeed.
                let status = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    503
                } else {
                    200
                };
                let _ = request
                    .respond(tiny_http::Response::from_data(&b"body"[..]).with_status_code(status));
            }
        });
        let (_tmp, _src, fetcher) = setup(b"");
        let url = format!("http://127.0.0.1:{port}/f");
        let got = fetcher
            .fetch(&url, "f", &sha(b"body"), "wheels")
            .expect("fetched on the second try");
        assert_eq!(fs_err::read(&got).expect("read"), b"body");
        assert_eq!(hits.load(Ordering::SeqCst), 2);

        let err = fetcher
            .fetch(&url, "g", &sha(b"other"), "wheels")
            .expect_err("mismatch");
        assert!(format!("{err:#}").contains("expected sha256"), "{err:#}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    /// Real HTTPS through this machine's proxy: proves the platform verifier is in use.
    /// Run with `cargo test -p xtask -- --ignored https_from_pypi`.
    #[test]
    #[ignore = "needs the network"]
    fn https_from_pypi() {
        let (_tmp, _src, fetcher) = setup(b"");
        let url = "https://files.pythonhosted.org/packages/d9/5a/e7c31adbe875f2abbb91bd84cf2dc52d792b5a01506781dbcf25c91daf11/six-1.16.0-py2.py3-none-any.whl";
        let hash: Sha256Hex = "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
            .parse()
            .expect("sha");
        let got = fetcher
            .fetch(url, "six-1.16.0-py2.py3-none-any.whl", &hash, "wheels")
            .expect("https fetch");
        assert!(got.is_file());
    }
}
