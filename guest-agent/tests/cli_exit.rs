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

/// `run` reports on the status port (a file here): `ready`, then `failed` with the stage
/// and kind, and exits with the kind's status; nothing is mounted.
#[test]
fn run_failures_are_status_lines_and_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(d("process.json"), r#"{"args":["true"]}"#).unwrap();
    std::fs::write(d("bad-process.json"), r#"{"args":[],"cwd":"/"}"#).unwrap();
    std::fs::write(
        d("bad-plan.json"),
        r#"{"containerId": "c1", "rootHash": ""}"#,
    )
    .unwrap();
    let good_plan = format!(
        r#"{{"containerId": "c1", "layers": [{{"digest": "{DIGEST}", "disk": {{"serial": "lp-none"}},
             "fsType": "FS_TYPE_EROFS"}}], "upper": {{"tmpfs": {{"sizeBytes": "4096"}}}}}}"#
    );
    std::fs::write(d("plan.json"), good_plan).unwrap();
    let run_with = |plan: &str, process: &str, stderr: &str, extra: &[&str]| {
        let (status, stdout, run_dir) = (d("status"), d("out"), d("run"));
        let mut args = vec![
            "run",
            "--plan",
            plan,
            "--process",
            process,
            "--status-port",
            &status,
            "--stdout-port",
            &stdout,
            "--stderr-port",
            stderr,
            "--run-dir",
            &run_dir,
        ];
        args.extend_from_slice(extra);
        let out = guest(&args);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(d("status"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, lines)
    };
    let run = |plan: &str, process: &str, extra: &[&str]| run_with(plan, process, &d("err"), extra);

    let (out, lines) = run(&d("bad-plan.json"), &d("process.json"), &[]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["event"], "ready");
    assert!(lines[0]["uptime_ms"].as_u64().unwrap() > 0);
    assert_eq!(lines[1]["event"], "failed");
    assert_eq!(lines[1]["stage"], "plan");
    assert_eq!(lines[1]["kind"], "InvalidArgument");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("bad-plan.json"),
        "{lines:?}"
    );

    let (out, lines) = run(&d("plan.json"), &d("bad-process.json"), &[]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert_eq!(lines[1]["stage"], "process");
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("args: empty"),
        "{lines:?}"
    );

    let (out, lines) = run(&d("plan.json"), &d("missing.json"), &[]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert_eq!(
        (&lines[1]["stage"], &lines[1]["kind"]),
        (&"process".into(), &"NotFound".into())
    );

    // the policy refuses a layer without verity: the mount stage fails before any disk
    let (out, lines) = run(&d("plan.json"), &d("process.json"), &["--require-verity"]);
    assert_eq!(lines[1]["stage"], "mount", "{lines:?} {}", stderr(&out));
    assert_eq!(lines[1]["kind"], "PermissionDenied");
    assert_ne!(out.status.code(), Some(0));

    // a port that cannot be opened
    let (out, lines) = run_with(
        &d("plan.json"),
        &d("process.json"),
        "/nonexistent-dir/err",
        &[],
    );
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["event"], &lines[0]["stage"]),
        (&"failed".into(), &"ports".into())
    );
}

/// Measurement flags are checked before anything is read or created: a confidential
/// agent with nothing to measure with refuses to start unless `--measure log` is given,
/// and a PCR the TPM would refuse is named with the reason.
#[test]
fn measurement_flags_exit_with_their_kind_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let missing = dir.path().join("missing");
    let (run_s, missing) = (run.to_str().unwrap(), missing.to_str().unwrap());
    let refs = dir.path().join("refs.toml");
    std::fs::write(&refs, format!("root_hashes = [\"{}\"]\n", "ab".repeat(32))).unwrap();
    let refs = refs.to_str().unwrap();
    let absent_plan = dir.path().join("absent.json");
    let absent_plan = absent_plan.to_str().unwrap();
    let base = [
        "mount",
        "--run-dir",
        run_s,
        "--plan",
        absent_plan,
        "--aa-socket",
        missing,
        "--tpm-device",
        missing,
    ];
    let with = |extra: &[&str]| guest(&[&base[..], extra].concat());

    let out = with(&["--confidential", "--reference-values", refs]);
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("FailedPrecondition: --confidential with --measure auto"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--measure log"), "{}", stderr(&out));
    assert!(!run.exists(), "the run directory was created");

    // Explicitly log-only: the flags pass, the (absent) plan is what fails.
    let out = with(&[
        "--confidential",
        "--reference-values",
        refs,
        "--measure",
        "log",
    ]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));

    let out = with(&["--measure", "tpm", "--pcr", "18"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("TPM_RC_LOCALITY"), "{}", stderr(&out));

    // An explicit TPM that is not there: the backend cannot start.
    let out = guest(&[
        "unmount",
        "--run-dir",
        run_s,
        "--measure",
        "tpm",
        "--tpm-device",
        missing,
        "c1",
    ]);
    assert_eq!(out.status.code(), Some(13), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("cannot open the TPM {missing}")),
        "{}",
        stderr(&out)
    );
}
