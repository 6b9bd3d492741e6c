//! The `layerpass-guest` binary's one-shot commands: the exit status per error kind and
//! the `<Kind>: <message>` line on stderr, for what runs without root (plan and flag
//! errors, an idempotent unmount, an empty list).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::{Command, Output};

fn guest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_layerpass-guest"))
        .args(args)
        .env("LAYERPASS_LOG", "off")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn plan_errors_exit_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();

    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        format!(
            r#"{{"containerId": "c1", "layers": [{{"digest": "{DIGEST}", "fsType": "FS_TYPE_EROFS"}}],
               "upper": {{"tmpfs": {{"sizeBytes": "4096"}}}}}}"#
        ),
    )
    .unwrap();
    let out = guest(&["mount", "--run-dir", run, "--plan", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "InvalidArgument: container c1: layer 0 ({DIGEST}): validate plan: \
             layers[0].disk: missing (needs a serial or a partition)"
        )
    );
    assert!(out.stdout.is_empty());

    std::fs::write(&plan, r#"{"containerId": "c1", "rootHash": ""}"#).unwrap();
    let out = guest(&["mount", "--run-dir", run, "--plan", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("InvalidArgument: plan "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("rootHash"), "{}", stderr(&out));

    let absent = dir.path().join("absent.json");
    let out = guest(&[
        "mount",
        "--run-dir",
        run,
        "--plan",
        absent.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("NotFound: cannot read plan "),
        "{}",
        stderr(&out)
    );

    let out = guest(&["mount", "--confidential", "--run-dir", run, "--plan", "-"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--reference-values"),
        "{}",
        stderr(&out)
    );

    let out = guest(&["mount", "--nonsense"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn unmount_of_an_unknown_container_succeeds_and_list_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let out = guest(&["unmount", "--run-dir", run_s, "nobody"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Path::new(&run).is_dir());

    let out = guest(&["list", "--run-dir", run_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let out = guest(&["list", "--json", "--run-dir", run_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"containers": []}"#
    );
}
