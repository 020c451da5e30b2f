//! Protocol conformance: nothing Python prints or returns can wedge the client.
//!
//! The same cases run against the Node.js client (`clients/node/pythonexec/test/`). Uses this
//! machine's `python3`, or `PYTHONEXEC_TEST_PYTHON` when set.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::{Duration, Instant};

use pythonexec::{Error, Interpreter, Op, Worker, WorkerConfig};
use serde_json::{json, Value};

fn python() -> Interpreter {
    match std::env::var_os("PYTHONEXEC_TEST_PYTHON") {
        Some(path) if !path.is_empty() => Interpreter::explicit(path),
        _ => Interpreter::explicit("python3"),
    }
}

fn worker() -> Worker {
    Worker::spawn(
        WorkerConfig::default()
            .interpreter(python())
            .request_timeout(Duration::from_secs(60)),
    )
    .expect("spawn worker")
}

async fn eval(w: &Worker, expr: &str) -> pythonexec::Result<Value> {
    let op = Op::Eval {
        expr: expr.to_owned(),
        input: Value::Null,
    };
    w.request(op, None).await
}

/// Each value JSON cannot carry is answered at once with an error naming its type.
#[tokio::test]
async fn values_json_cannot_carry_are_refused_at_once() {
    let w = worker();
    w.ready().await.expect("ready");
    let cases = [
        ("float('nan')", "float nan"),
        ("{'x': [float('-inf')]}", "float -inf"),
        ("'a\\udcff'", "lone surrogate"),
        (
            "b'\\xff'.decode('utf-8', 'surrogateescape')",
            "lone surrogate",
        ),
        ("10**400", "an int of 1329 bits"),
        ("-(2**64)", "an int of 65 bits"),
    ];
    for (expr, what) in cases {
        let started = Instant::now();
        let err = eval(&w, expr).await.expect_err(expr);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{expr} took too long"
        );
        let exc = err
            .python_exception()
            .unwrap_or_else(|| panic!("{expr}: {err:?}"));
        assert_eq!(exc.exc_type, "pythonexec.UnsendableValue", "{expr}");
        assert!(exc.message.contains(what), "{expr}: {}", exc.message);
    }
    // An int key becomes a string, however large.
    let v = eval(&w, "{10**30: [2**64 - 1]}").await.expect("int key");
    assert_eq!(v, json!({"1000000000000000000000000000000": [u64::MAX]}));
    // What JSON can carry goes through unchanged, including the 64-bit extremes and digits
    // inside strings that look like long numbers.
    let v = eval(
        &w,
        "[2**64 - 1, -(2**63), 'a,12345678901234567890123', 1e308, 'é']",
    )
    .await
    .expect("eval");
    assert_eq!(
        v,
        json!([u64::MAX, i64::MIN, "a,12345678901234567890123", 1e308, "é"])
    );
    assert_eq!(w.generation(), 1);
}

#[tokio::test]
async fn a_streamed_chunk_json_cannot_carry_ends_the_stream_with_an_error() {
    use futures::StreamExt;
    let w = worker();
    let op = Op::Eval {
        expr: "(x for x in [1, float('nan'), 3])".into(),
        input: Value::Null,
    };
    let stream = w.request_stream(op, None).await.expect("stream");
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].as_ref().expect("first"), &json!(1));
    let err = items[1].as_ref().expect_err("second");
    assert!(err.to_string().contains("UnsendableValue"), "{err}");
    w.ping().await.expect("ping");
}

/// Bytes that are not UTF-8 on fd 1 and fd 2 are logged lossily; the worker goes on, and
/// later prints (more than a pipe buffer of them) still work.
#[tokio::test]
async fn non_utf8_bytes_on_stdout_and_stderr_do_not_wedge_the_worker() {
    let w = worker();
    let code = "import os, sys\nos.write(1, b'\\xff\\xfe not utf-8 on fd 1\\n')\nos.write(2, b'\\xc3\\x28 not utf-8 on fd 2\\n')\nsys.stdout.write('Give Feedback / Get Help\\n')\nresult = 'still fine'";
    assert_eq!(
        w.exec(code, Value::Null).await.expect("exec"),
        json!("still fine")
    );
    let lots = "import sys\nfor i in range(20000):\n    print('x' * 100)\n    print('y' * 100, file=sys.stderr)\nresult = 'printed'";
    assert_eq!(
        w.exec(lots, Value::Null)
            .await
            .expect("prints after bad bytes"),
        json!("printed")
    );
    w.ping().await.expect("ping");
    assert_eq!(w.generation(), 1);
}

/// When the worker dies, the stderr it wrote last is quoted, bad bytes or not.
#[tokio::test]
async fn the_stderr_tail_of_a_dead_worker_is_the_real_one() {
    let w = worker();
    let code = "import os, sys\nos.write(2, b'\\xff\\xfe early garbage\\n')\nprint('last words 4711', file=sys.stderr)\nsys.stderr.flush()\nos._exit(3)";
    let err = w.exec(code, Value::Null).await.expect_err("dies");
    let Error::WorkerDied {
        stderr_tail,
        status,
        ..
    } = &err
    else {
        panic!("expected WorkerDied, got {err:?}");
    };
    assert!(stderr_tail.contains("last words 4711"), "{stderr_tail}");
    assert!(stderr_tail.contains('\u{fffd}'), "{stderr_tail}");
    assert!(status.contains('3'), "{status}");
    w.ping().await.expect("a new process");
    assert_eq!(w.generation(), 2);
}

/// A stand-in worker answering with lines no client can decode (`tests/fixtures`).
fn bad_worker(dir: &tempfile::TempDir) -> Worker {
    use std::os::unix::fs::PermissionsExt;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_worker.py");
    let python = python().program;
    let path = dir.path().join("python");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec '{}' -u '{}'\n",
            python.display(),
            script.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Worker::spawn(
        WorkerConfig::default()
            .interpreter(Interpreter::explicit(path))
            .request_timeout(Duration::from_secs(60)),
    )
    .expect("spawn")
}

#[tokio::test]
async fn an_undecodable_reply_fails_its_own_request_at_once_quoting_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = bad_worker(&dir);
    w.ready().await.expect("ready");
    for (kind, quoted) in [
        ("nan", "NaN"),
        ("bytes", "\u{fffd}"),
        ("shape", "\"type\":7"),
        ("surrogate", "ud800"),
    ] {
        let started = Instant::now();
        let err = eval(&w, kind).await.expect_err(kind);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{kind} took too long"
        );
        let Error::BadReply { line, .. } = &err else {
            panic!("{kind}: expected BadReply, got {err:?}");
        };
        assert!(line.contains(quoted), "{kind}: {line}");
        assert!(err.to_string().contains(quoted), "{kind}: {err}");
    }
    assert_eq!(eval(&w, "ok").await.expect("fine"), json!("fine"));
}

/// In Lambda the working directory is the function's `/var/task`: its files must not shadow
/// modules.
#[tokio::test]
async fn the_working_directory_is_not_on_sys_path() {
    let task = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        task.path().join("json.py"),
        "raise SystemExit('shadowed!')\n",
    )
    .expect("write");
    let w = Worker::spawn(
        WorkerConfig::default()
            .interpreter(python())
            .current_dir(task.path()),
    )
    .expect("spawn");
    assert_eq!(
        eval(&w, "__import__('json').dumps(1)").await.expect("eval"),
        json!("1")
    );
    let path = eval(&w, "__import__('sys').path").await.expect("eval");
    let path: Vec<&str> = path
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let task_dir = task.path().to_str().expect("utf-8");
    assert!(!path.contains(&"") && !path.contains(&task_dir), "{path:?}");
}

/// A crash between requests: the next request runs on a new process and succeeds.
#[tokio::test]
async fn a_crash_between_requests_is_invisible_to_the_next_one() {
    let w = worker();
    w.ping().await.expect("ping");
    let pid = w.pid().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    for _ in 0..100 {
        if w.pid() != Some(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.ping().await.expect("a new process answers");
    assert_eq!(w.generation(), 2);
}
