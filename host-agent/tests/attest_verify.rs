//! `layerpass attest verify` as a user runs it, on logs built with
//! `layerpass_types::attest`: an accepted log and its printed list, a flipped content byte,
//! a wrong register value, an unlisted root hash (each rejected with exit status 3, naming
//! the event), the `--json` shape, and usage errors.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use layerpass_types::attest::eventlog::{encode_log, parse, replay};
use layerpass_types::attest::{Event, LayerMeasurement, Operation};

fn layer(n: u8, container: &str) -> LayerMeasurement {
    LayerMeasurement {
        container_id: container.into(),
        digest: Some(format!("sha256:{}", hex::encode([n; 32]))),
        root_hash: hex::encode([n + 100; 32]),
        hash_algorithm: "sha256".into(),
        salt: hex::encode([0u8; 32]),
        data_size: 4096 * u64::from(n),
        corruption: "eio".into(),
    }
}

fn root(n: u8) -> String {
    hex::encode([n + 100; 32])
}

/// Three layers of container `c1` mounted, in PCR 14.
fn three_mounts() -> Vec<u8> {
    let events: Vec<Event> = (1..=3)
        .map(|n| Event::layer(Operation::MountLayer, &layer(n, "c1")))
        .collect();
    encode_log(14, &events)
}

/// The register as sysfs prints it: upper-case hex and a line feed.
fn sysfs_pcr(log: &[u8], index: u32) -> String {
    format!(
        "{}\n",
        hex::encode_upper(replay(&parse(log).unwrap(), index))
    )
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(log: &[u8], refs: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("eventlog"), log).unwrap();
        let list: Vec<String> = refs.iter().map(|n| format!("\"{}\"", root(*n))).collect();
        fs::write(
            dir.path().join("refs.toml"),
            format!("root_hashes = [{}]\n", list.join(", ")),
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn verify(&self, pcr: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_layerpass"))
            .args(["attest", "verify", "--event-log", "eventlog", "--pcr", pcr])
            .args(extra)
            .current_dir(self.path())
            .output()
            .unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn accepted_log_prints_the_verified_layers() {
    let log = three_mounts();
    let s = Setup::new(&log, &[1, 2, 3]);
    let out = s.verify(&sysfs_pcr(&log, 14), &["--reference-values", "refs.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("3 events of PCR 14 replay to"), "{text}");
    assert!(
        text.contains("checked against the reference values"),
        "{text}"
    );
    for n in 1..=3u8 {
        assert!(
            text.contains(&format!(
                "MountLayer container c1 digest sha256:{} root hash {}",
                hex::encode([n; 32]),
                root(n)
            )),
            "layer {n}: {text}"
        );
    }
}

#[test]
fn a_flipped_content_byte_is_rejected_naming_the_event() {
    let log = three_mounts();
    let pcr = sysfs_pcr(&log, 14);
    let entries = parse(&log).unwrap();
    let mut tampered = log.clone();
    // A byte of the second event's content (in its salt).
    let second = &entries[1];
    let at = usize::try_from(second.offset).unwrap() + second.len - 40;
    tampered[at] ^= 0x01;
    let s = Setup::new(&tampered, &[1, 2, 3]);
    let out = s.verify(&pcr, &["--reference-values", "refs.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "evidence rejected: event 1 at offset {}: its sha256 digest is not the hash of its event data",
            second.offset
        )),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn a_wrong_register_value_is_rejected() {
    let log = three_mounts();
    let s = Setup::new(&log, &[1, 2, 3]);
    // The register of another log (the first two events only).
    let two = encode_log(
        14,
        &[
            Event::layer(Operation::MountLayer, &layer(1, "c1")),
            Event::layer(Operation::MountLayer, &layer(2, "c1")),
        ],
    );
    let out = s.verify(&sysfs_pcr(&two, 14), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("replaying the log's 3 entries of PCR 14 gives"),
        "{}",
        stderr(&out)
    );
    // The right value for PCR 14, checked as PCR 15 (no entries there).
    let out = s.verify(&sysfs_pcr(&log, 14), &["--pcr-index", "15"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 entries of PCR 15"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unlisted_root_hash_is_rejected_naming_the_event() {
    let log = three_mounts();
    let s = Setup::new(&log, &[1, 2]);
    let third = parse(&log).unwrap()[2].offset;
    let out = s.verify(&sysfs_pcr(&log, 14), &["--reference-values", "refs.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "event 2 at offset {third}: container c1: root hash {} is not in the reference values",
            root(3)
        )),
        "{}",
        stderr(&out)
    );
    // Without reference values the same log is accepted, and says so.
    let out = s.verify(&sysfs_pcr(&log, 14), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("no reference values given"));
}

#[test]
fn json_shape() {
    let foreign = Event {
        domain: "github.com/confidential-containers".into(),
        operation: "PullImage".into(),
        content: "{\"digest\":\"sha256:00\",\"image\":\"x\"}".into(),
    };
    let log = encode_log(
        14,
        &[
            Event::layer(Operation::MountLayer, &layer(1, "c1")),
            foreign,
            Event::layer(Operation::UnmountLayer, &layer(1, "c1")),
        ],
    );
    let s = Setup::new(&log, &[1]);
    let out = s.verify(
        &sysfs_pcr(&log, 14),
        &["--reference-values", "refs.toml", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["pcr_index"], 14);
    assert_eq!(json["pcr"], sysfs_pcr(&log, 14).trim().to_lowercase());
    assert_eq!(json["entries"], 3);
    assert_eq!(json["other_registers"], 0);
    assert_eq!(json["reference_values_checked"], true);
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["kind"], "layer");
    assert_eq!(events[0]["index"], 0);
    assert_eq!(events[0]["offset"], 0);
    assert_eq!(events[0]["operation"], "MountLayer");
    assert_eq!(events[0]["container_id"], "c1");
    assert_eq!(
        events[0]["digest"],
        format!("sha256:{}", hex::encode([1u8; 32]))
    );
    assert_eq!(events[0]["root_hash"], root(1));
    assert_eq!(events[0]["hash_algorithm"], "sha256");
    assert_eq!(events[0]["salt"], hex::encode([0u8; 32]));
    assert_eq!(events[0]["data_size"], 4096);
    assert_eq!(events[0]["corruption"], "eio");
    assert_eq!(events[0]["reference_values"], true);
    assert_eq!(events[1]["kind"], "foreign");
    assert_eq!(events[1]["domain"], "github.com/confidential-containers");
    assert_eq!(events[1]["operation"], "PullImage");
    assert_eq!(events[2]["operation"], "UnmountLayer");
    assert_eq!(events[2]["reference_values"], serde_json::Value::Null);

    // Rejected: the event and the reason.
    let s = Setup::new(&log, &[2]);
    let out = s.verify(
        &sysfs_pcr(&log, 14),
        &["--reference-values", "refs.toml", "--json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["event"], serde_json::json!({"index": 0, "offset": 0}));
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("is not in the reference values"),
        "{json}"
    );
}

#[test]
fn bad_arguments_and_files_are_errors() {
    let log = three_mounts();
    let s = Setup::new(&log, &[1]);
    let out = s.verify("xyz", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not 64 hex digits"),
        "{}",
        stderr(&out)
    );
    fs::write(s.path().join("bad.toml"), "root_hashes = [\"00\"]\n").unwrap();
    let out = s.verify(&sysfs_pcr(&log, 14), &["--reference-values", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reference values bad.toml"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(s.path().join("eventlog")).unwrap();
    let out = s.verify(&sysfs_pcr(&log, 14), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read eventlog"),
        "{}",
        stderr(&out)
    );
    // Usage: --pcr is required.
    let out = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(["attest", "verify", "--event-log", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
