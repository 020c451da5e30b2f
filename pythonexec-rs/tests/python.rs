//! Generic behaviour against this machine's `python3` (no LiteLLM needed).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::Duration;

use futures::StreamExt;
use pythonexec::{
    run_python, verify_python_environment_with, Error, Interpreter, Op, RunOptions, Worker,
    WorkerConfig,
};
use serde_json::{json, Map, Value};

fn python() -> Interpreter {
    Interpreter::explicit("python3")
}

fn worker() -> Worker {
    Worker::spawn(WorkerConfig::default().interpreter(python())).expect("spawn worker")
}

fn opts() -> RunOptions {
    RunOptions::default()
        .interpreter(python())
        .timeout(Duration::from_secs(60))
}

/// A process that is gone, or reaped: not a zombie.
fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
    }
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if std::fs::metadata(format!("/proc/{pid}")).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---- run_python ----

#[tokio::test]
async fn run_python_returns_output_and_last_json_line() {
    let code = "import sys\nprint('hello')\nprint('to stderr', file=sys.stderr)\nprint('{\"answer\": 42}')\n";
    let out = run_python(code, opts()).await.expect("run");
    assert!(out.stdout.starts_with("hello\n"));
    assert!(out.stderr.contains("to stderr"));
    assert_eq!(out.code, Some(0));
    assert_eq!(out.json, Some(json!({"answer": 42})));
    assert!(out.duration > Duration::ZERO);
}

#[tokio::test]
async fn run_python_reads_json_input_from_stdin() {
    let code =
        "import json, sys\nv = json.load(sys.stdin)\nprint(json.dumps({'double': v['n'] * 2}))";
    let out = run_python(code, opts().input_json(&json!({"n": 21})))
        .await
        .expect("run");
    assert_eq!(out.json, Some(json!({"double": 42})));
}

#[tokio::test]
async fn run_python_timeout_kills_and_leaves_no_zombie() {
    let err = run_python(
        "import time\ntime.sleep(600)",
        opts().timeout(Duration::from_millis(500)),
    )
    .await
    .expect_err("must time out");
    let Error::Timeout { pid, timeout, .. } = err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(timeout, Duration::from_millis(500));
    assert!(pid > 0);
    assert!(process_is_gone(pid), "pid {pid} is still there or a zombie");
}

#[tokio::test]
async fn run_python_garbage_is_bad_json() {
    let err = run_python("print('this is not json')", opts())
        .await
        .expect_err("must fail");
    assert!(
        matches!(&err, Error::BadJson { line, .. } if line == "this is not json"),
        "{err:?}"
    );
    let out = run_python("print('free text')", opts().allow_non_json())
        .await
        .expect("allowed");
    assert_eq!(out.json, None);
}

#[tokio::test]
async fn run_python_non_zero_exit_quotes_stderr() {
    let err = run_python("raise SystemExit('boom: bad config')", opts())
        .await
        .expect_err("must fail");
    let Error::NonZeroExit {
        code, stderr_tail, ..
    } = &err
    else {
        panic!("expected non-zero exit, got {err:?}");
    };
    assert_eq!(*code, Some(1));
    assert!(stderr_tail.contains("boom: bad config"), "{stderr_tail}");
}

#[tokio::test]
async fn missing_interpreter_is_reported_with_the_reason() {
    let options = RunOptions::default().interpreter(Interpreter::explicit("/nonexistent/python3"));
    let err = run_python("print(1)", options)
        .await
        .expect_err("must fail");
    assert!(matches!(err, Error::InterpreterNotFound { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("/nonexistent/python3 (given explicitly)"));

    let err = Worker::spawn(
        WorkerConfig::default().interpreter(Interpreter::explicit("/nonexistent/python3")),
    )
    .expect_err("must fail");
    assert!(matches!(err, Error::InterpreterNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn health_check_reports_interpreter_and_absent_packages() {
    let report = verify_python_environment_with(&python(), Duration::from_secs(120))
        .await
        .expect("health");
    assert!(report.version.starts_with("3."), "{}", report.version);
    assert!(!report.machine.is_empty());
    assert!(!report.prefix.is_empty());
    assert!(report.reason.contains("given explicitly"));
    assert!(report.packages.contains_key("litellm"));
    if report.litellm_version().is_none() {
        assert!(report.import_litellm_error.is_some());
        assert!(report.import_litellm.is_none());
    }
    assert!(report.packages.contains_key("openai"));
}

// ---- worker ----

#[tokio::test]
async fn worker_exec_eval_call_and_ping() {
    let w = worker();
    w.ping().await.expect("ping");
    let v = w
        .exec(
            "result = {'sum': input['a'] + input['b']}",
            json!({"a": 1, "b": 2}),
        )
        .await
        .expect("exec");
    assert_eq!(v, json!({"sum": 3}));
    assert_eq!(w.eval("[1, 2, 3][-1]").await.expect("eval"), json!(3));
    let mut kwargs = Map::new();
    kwargs.insert("sort_keys".into(), json!(true));
    let v = w
        .call("json.dumps", vec![json!({"b": 1, "a": 2})], kwargs)
        .await
        .expect("call");
    assert_eq!(v, json!("{\"a\": 2, \"b\": 1}"));
    // A coroutine result is awaited.
    let v = w
        .eval("__import__('asyncio').sleep(0, result='awaited')")
        .await
        .expect("eval coroutine");
    assert_eq!(v, json!("awaited"));
    w.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn worker_python_exception_is_typed() {
    let w = worker();
    let err = w
        .exec(
            "def f():\n    raise ValueError('bad value 7')\nf()",
            Value::Null,
        )
        .await
        .expect_err("must raise");
    let exc = err.python_exception().expect("a python exception");
    assert_eq!(exc.exc_type, "ValueError");
    assert_eq!(exc.message, "bad value 7");
    assert!(exc.traceback.contains("Traceback"), "{}", exc.traceback);
    assert!(exc.traceback.contains("in f"), "{}", exc.traceback);

    let err = w
        .call("json.loads", vec![json!("{nope")], Map::new())
        .await
        .expect_err("must raise");
    let exc = err.python_exception().expect("a python exception");
    assert_eq!(exc.exc_type, "json.decoder.JSONDecodeError");

    let err = w.eval("object()").await.expect_err("not serializable");
    assert_eq!(
        err.python_exception().map(|e| e.exc_type.as_str()),
        Some("TypeError")
    );
    // The worker survives all of that.
    w.ping().await.expect("ping after errors");
    assert_eq!(w.generation(), 1);
}

#[tokio::test]
async fn worker_stdout_prints_do_not_corrupt_the_protocol() {
    let w = worker();
    let v = w
        .exec(
            "import os, sys\nprint('garbage {')\nsys.stdout.write('more garbage\\n')\nos.write(1, b'raw fd 1\\n')\nresult = 'clean'",
            Value::Null,
        )
        .await
        .expect("exec");
    assert_eq!(v, json!("clean"));
    w.ping().await.expect("ping");
}

#[tokio::test]
async fn worker_thousand_concurrent_requests() {
    let w = worker();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move {
                let op = Op::Eval {
                    expr: "{'echo': input, 'sq': input * input}".into(),
                    input: json!(i),
                };
                (i, w.request(op, Some(Duration::from_secs(300))).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, reply) = task.await.expect("join");
        assert_eq!(reply.expect("reply"), json!({"echo": i, "sq": i * i}));
    }
    assert_eq!(w.generation(), 1);
}

#[tokio::test]
async fn worker_round_trips_a_five_megabyte_reply() {
    let w = worker();
    let big = "x".repeat(5 * 1024 * 1024);
    let v = w
        .exec("result = input + 'y'", json!(big))
        .await
        .expect("exec");
    let s = v.as_str().expect("a string");
    assert_eq!(s.len(), big.len() + 1);
    assert!(s.ends_with("xy"));
}

#[tokio::test]
async fn worker_killed_mid_request_fails_in_flight_and_restarts() {
    let w = worker();
    w.ping().await.expect("ping");
    let pid = w.pid().expect("pid");
    let slow = {
        let w = w.clone();
        tokio::spawn(async move { w.exec("import time\ntime.sleep(120)", Value::Null).await })
    };
    // Let the request reach Python; even if it has not, it is in flight and must fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let err = slow.await.expect("join").expect_err("must fail");
    assert!(matches!(err, Error::WorkerDied { .. }), "{err:?}");
    assert!(err.to_string().contains("died"), "{err}");
    assert!(
        err.to_string().contains("SIGKILL") || err.to_string().contains("signal"),
        "{err}"
    );

    w.ping().await.expect("next request starts a new process");
    let new_pid = w.pid().expect("pid");
    assert_ne!(new_pid, pid);
    assert_eq!(w.generation(), 2);
    assert!(wait_gone(pid).await, "old worker {pid} was not reaped");
}

#[tokio::test]
async fn worker_request_timeout_cancels_and_worker_keeps_working() {
    let w = worker();
    let op = Op::Eval {
        expr: "__import__('asyncio').sleep(600)".into(),
        input: Value::Null,
    };
    let err = w
        .request(op, Some(Duration::from_millis(500)))
        .await
        .expect_err("must time out");
    assert!(matches!(err, Error::RequestTimeout { .. }), "{err:?}");
    w.ping().await.expect("ping after timeout");
    // The cancel reached Python: the sleeping task is gone.
    let mut tasks = json!(99);
    for _ in 0..100 {
        tasks = w
            .eval("len([t for t in __import__('asyncio').all_tasks(loop) if 'sleep' in repr(t.get_coro())])")
            .await
            .expect("eval");
        if tasks == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tasks, json!(0));
}

#[tokio::test]
async fn worker_dropping_a_future_cancels_the_request() {
    let w = worker();
    let long = w.exec("import time\ntime.sleep(2)\nresult = 'late'", Value::Null);
    tokio::select! {
        _ = long => panic!("should not finish first"),
        () = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // The worker is unharmed, and other requests proceed while that thread finishes.
    for _ in 0..10 {
        w.ping().await.expect("ping");
    }
    assert_eq!(
        w.exec("result = 5", Value::Null).await.expect("exec"),
        json!(5)
    );
    assert_eq!(w.generation(), 1);
}

#[tokio::test]
async fn worker_streams_generator_items() {
    let w = worker();
    let op = Op::Eval {
        expr: "({'i': i} for i in range(5))".into(),
        input: Value::Null,
    };
    let stream = w.request_stream(op, None).await.expect("stream");
    let items: Vec<Value> = stream.map(|item| item.expect("item")).collect().await;
    assert_eq!(items, (0..5).map(|i| json!({"i": i})).collect::<Vec<_>>());
    let code = "async def gen():\n    for i in range(3):\n        yield i\nresult = None";
    w.exec(code, Value::Null).await.expect("exec");
}

#[tokio::test]
async fn worker_shutdown_is_graceful_and_final() {
    let w = worker();
    w.ping().await.expect("ping");
    let pid = w.pid().expect("pid");
    w.shutdown().await.expect("shutdown");
    assert!(wait_gone(pid).await, "worker {pid} still running");
    let err = w.ping().await.expect_err("shut down");
    assert!(matches!(err, Error::ShutDown), "{err:?}");
}

#[tokio::test]
async fn worker_spawn_returns_before_python_is_ready() {
    let config = WorkerConfig::default()
        .interpreter(python())
        .env("PYTHONEXEC_TEST_MARK", "1");
    let started = std::time::Instant::now();
    let w = Worker::spawn(config).expect("spawn");
    let spawn_took = started.elapsed();
    w.ready().await.expect("ready");
    // Not a speed assertion: spawning must not include the readiness wait.
    assert!(spawn_took <= started.elapsed());
    let v = w
        .eval("__import__('os').environ.get('PYTHONEXEC_TEST_MARK')")
        .await
        .expect("eval");
    assert_eq!(v, json!("1"));
}

/// A stand-in "python" that runs `body` as a shell script, whatever arguments it gets.
fn fake_python(dir: &tempfile::TempDir, body: &str) -> Interpreter {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join("python");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Interpreter::explicit(path)
}

#[tokio::test]
async fn worker_that_dies_at_start_reports_its_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = fake_python(
        &dir,
        "echo 'ImportError: no module named encodings' >&2\nexit 3",
    );
    let w = Worker::spawn(WorkerConfig::default().interpreter(python)).expect("spawn");
    let err = w.ping().await.expect_err("must fail");
    assert!(matches!(err, Error::WorkerStart { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no module named encodings"),
        "{err}"
    );
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    assert!(err.to_string().contains("given explicitly"), "{err}");
    // Each request tries a fresh process.
    let _ = w.ping().await.expect_err("still broken");
    assert_eq!(w.generation(), 2);
}

#[tokio::test]
async fn worker_with_another_protocol_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = fake_python(
        &dir,
        r#"echo '{"id": null, "type": "ready", "protocol": 99}'
exec sleep 600"#,
    );
    let w = Worker::spawn(WorkerConfig::default().interpreter(python)).expect("spawn");
    let err = w.ping().await.expect_err("must fail");
    assert!(
        matches!(
            err,
            Error::ProtocolVersion {
                expected: 1,
                found: 99
            }
        ),
        "{err:?}"
    );
}

/// The layer tree `ci/test.sh` builds stands in for `/opt`: the interpreter and its
/// environment come from the tree's own `layer-manifest.json`.
#[tokio::test]
async fn a_built_layer_tree_names_its_own_interpreter() {
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-fixtures/layer-x86_64-default/tree");
    if !tree.join(pythonexec::LAYER_MANIFEST).is_file() {
        println!("skipped: no layer tree at {}", tree.display());
        return;
    }
    let interpreter = pythonexec::choose_in(
        None,
        |name| (name == "AWS_LAMBDA_FUNCTION_NAME").then(|| "f".into()),
        &tree,
    );
    assert!(interpreter.resolve().is_ok(), "{interpreter}");
    let out = run_python(
        "import json, sys\nprint(json.dumps([sys.prefix, sys.version]))",
        RunOptions::default().interpreter(interpreter.clone()),
    )
    .await
    .expect("run");
    let json = out.json.expect("json");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(tree.join(pythonexec::LAYER_MANIFEST)).expect("read"),
    )
    .expect("manifest");
    let version = manifest["python_version"].as_str().expect("version");
    assert!(
        json[1].as_str().expect("str").starts_with(version),
        "{json}"
    );
    assert!(interpreter.to_string().contains(version), "{interpreter}");
}
