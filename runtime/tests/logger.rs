//! Proves the `binary://` logger wiring drayd's logger mode relies on: the shim starts the
//! logger with CONTAINER_ID/CONTAINER_NAMESPACE, query args as argv pairs, fd 3 = stdout,
//! fd 4 = stderr (kept apart), fd 5 = ready.

mod common;

use std::time::Duration;

use common::{eventually, setup, spec};
use dray_runtime::Log;

#[tokio::test]
async fn binary_logger_receives_stdout_and_stderr_separately() {
    let env = setup().await;
    let rt = &env.rt;
    let file = env.tmp.path().join("logger out.log");
    let mut s = spec(
        "logged",
        &["sh", "-c", "echo line1; echo oops >&2; echo line2"],
    );
    s.log = Log::Binary {
        path: env!("CARGO_BIN_EXE_dray-test-logger").into(),
        args: vec![
            ("file".into(), file.to_string_lossy().into()),
            ("extra".into(), "a b&c=d".into()),
        ],
    };
    rt.run(&s).await.unwrap();
    assert_eq!(rt.wait("logged").await.unwrap(), 0);
    let want = ["OUT line1", "OUT line2", "ERR oops"];
    let ok = eventually(|| {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        want.iter().all(|w| t.contains(w))
    })
    .await;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(ok, "logger output: {text:?}");
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "START logged {} [(\"extra\", \"a b&c=d\"), (\"file\", {:?})]",
            rt.namespace(),
            file.to_string_lossy()
        )
    );
    let out_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("OUT")).collect();
    assert_eq!(out_lines, vec!["OUT line1", "OUT line2"]);
    // Deleting the task closes the pipes and the shim terminates the logger.
    rt.remove("logged").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
}
