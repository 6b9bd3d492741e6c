use std::path::Path;

use clap::Parser;

use super::*;
use crate::server::Transport;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("layerpass-guest").chain(args.iter().copied())).unwrap()
}

fn serve_args(args: &[&str]) -> ServeArgs {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    match parse(&all).command {
        Command::Serve(a) => a,
        other => panic!("not serve: {other:?}"),
    }
}

#[test]
fn transports_from_flags() {
    assert_eq!(
        serve_args(&[]).transport().unwrap(),
        Transport::Vsock {
            port: 1027,
            allowed_cids: vec![2]
        }
    );
    assert_eq!(
        serve_args(&["--vsock-allow-cid", "2", "--vsock-allow-cid", "7"])
            .transport()
            .unwrap(),
        Transport::Vsock {
            port: 1027,
            allowed_cids: vec![2, 7]
        }
    );
    assert_eq!(
        serve_args(&["--transport", "vsock", "--port", "2000"])
            .transport()
            .unwrap(),
        Transport::Vsock {
            port: 2000,
            allowed_cids: vec![2]
        }
    );
    assert_eq!(
        serve_args(&["--transport", "virtio-serial", "--device", "layerpass.0"])
            .transport()
            .unwrap(),
        Transport::VirtioSerial {
            device: "/dev/virtio-ports/layerpass.0".into()
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("a.sock");
    assert_eq!(
        serve_args(&["--transport", "unix", "--socket", sock.to_str().unwrap()])
            .transport()
            .unwrap(),
        Transport::Unix { socket: sock }
    );
}

#[test]
fn transport_flag_mismatches_are_invalid_arguments() {
    for (args, needle) in [
        (&["--transport", "virtio-serial"][..], "needs --device"),
        (&["--transport", "unix"][..], "needs --socket"),
        (
            &[
                "--transport",
                "unix",
                "--socket",
                "/tmp/x.sock",
                "--port",
                "5",
            ][..],
            "not --port",
        ),
        (&["--device", "x"][..], "not --device"),
        (
            &["--transport", "virtio-serial", "--device", "a/b"][..],
            "no '/'",
        ),
        (
            &["--transport", "unix", "--socket", "rel.sock"][..],
            "not absolute",
        ),
    ] {
        let failure = serve_args(args).transport().unwrap_err();
        assert_eq!(failure.kind, Kind::InvalidArgument, "{args:?}");
        assert!(
            failure.message.contains(needle),
            "{args:?}: {}",
            failure.message
        );
    }
    assert!(Cli::try_parse_from(["layerpass-guest", "serve", "--transport", "tcp"]).is_err());
    assert!(Cli::try_parse_from(["layerpass-guest", "serve", "--port", "x"]).is_err());
}

#[test]
fn policy_flags_make_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = serve_args(&[
        "--require-verity",
        "--run-dir",
        run.to_str().unwrap(),
        "--device-timeout",
        "2.5",
    ]);
    let config = args.policy.config().unwrap();
    assert!(config.require_verity);
    assert!(config.reference_values.is_none());
    assert_eq!(config.run_dir, run);
    assert_eq!(config.event_log, run.join("events.jsonl"));
    assert_eq!(
        config.device_timeout,
        std::time::Duration::from_millis(2500)
    );

    let defaults = serve_args(&[]).policy.config().unwrap();
    assert!(!defaults.require_verity);
    assert_eq!(defaults.run_dir, Path::new("/run/layerpass"));
    assert_eq!(defaults.rootfs_root, Path::new("/run/layerpass/rootfs"));
    let moved = serve_args(&["--rootfs-root", "/containers"])
        .policy
        .config()
        .unwrap();
    assert_eq!(moved.rootfs_root, Path::new("/containers"));

    let failure = serve_args(&["--confidential"]).policy.config().unwrap_err();
    assert_eq!(failure.kind, Kind::InvalidArgument);
    assert!(
        failure.message.contains("--reference-values"),
        "{}",
        failure.message
    );

    let failure = serve_args(&["--device-timeout=-1"])
        .policy
        .config()
        .unwrap_err();
    assert!(
        failure.message.contains("--device-timeout"),
        "{}",
        failure.message
    );

    let missing = dir.path().join("absent.toml");
    let failure = serve_args(&["--reference-values", missing.to_str().unwrap()])
        .policy
        .config()
        .unwrap_err();
    assert!(
        failure.message.contains("absent.toml"),
        "{}",
        failure.message
    );
}

#[test]
fn initdata_gives_the_reference_values() {
    use layerpass_types::initdata::{InitdataAlgorithm, KATA_PATH, LAYERPASS_KEY, render};
    // the flag alone means Kata's path
    let args = serve_args(&["--initdata", "--confidential"]);
    assert_eq!(args.policy.initdata.as_deref(), Some(Path::new(KATA_PATH)));

    let dir = tempfile::tempdir().unwrap();
    let root = "cd".repeat(32);
    let data = std::collections::BTreeMap::from([(
        LAYERPASS_KEY.to_owned(),
        format!("root_hashes = [\"{root}\"]\n"),
    )]);
    let file = dir.path().join("initdata.toml");
    std::fs::write(&file, render(InitdataAlgorithm::Sha384, &data)).unwrap();
    let f = file.to_str().unwrap();
    let config = serve_args(&["--confidential", "--initdata", f])
        .policy
        .config()
        .unwrap();
    assert!(config.require_verity);
    let refs = config.reference_values.unwrap();
    assert_eq!(refs.len(), 1);
    assert!(refs.check(&root, DIGEST).is_ok());

    // both sources: a usage error from the parser, and from config() if built by hand
    let both = Cli::try_parse_from([
        "layerpass-guest",
        "serve",
        "--initdata",
        f,
        "--reference-values",
        f,
    ])
    .unwrap_err();
    assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    let mut args = serve_args(&["--initdata", f]);
    args.policy.reference_values = Some(file.clone());
    let failure = args.policy.config().unwrap_err();
    assert_eq!(failure.kind, Kind::InvalidArgument);
    assert!(failure.message.contains("give one"), "{}", failure.message);

    // the default path, absent here: not found, named
    let failure = serve_args(&["--initdata"]).policy.config().unwrap_err();
    assert!(failure.message.contains(KATA_PATH), "{}", failure.message);
    // neither in confidential mode: refused, naming both flags
    let failure = serve_args(&["--confidential"]).policy.config().unwrap_err();
    assert!(
        failure.message.contains("--initdata"),
        "{}",
        failure.message
    );
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn plan_file(dir: &Path, json: &str) -> std::path::PathBuf {
    let path = dir.join("plan.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn json_plans_parse_and_convert() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        r#"{{
  "containerId": "web-1",
  "layers": [
    {{"digest": "{DIGEST}", "disk": {{"serial": "lp-layer0"}}, "fsType": "FS_TYPE_EROFS",
      "verity": {{"algorithm": "HASH_ALGORITHM_SHA256", "format": 1,
        "dataBlockSize": 4096, "hashBlockSize": 4096, "dataBlocks": "3",
        "hashStartBlock": "4", "salt": "", "rootHash": "{root}"}}}}
  ],
  "upper": {{"disk": {{"disk": {{"serial": "lp-scratch"}}, "fsType": "ext4"}}}}
}}"#,
        root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    );
    let req = oneshot::read_plan(&plan_file(dir.path(), &good)).unwrap();
    let plan = crate::server::convert::mount_plan(&req).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.container_id, "web-1");
    assert_eq!(
        plan.layers[0].verity.as_ref().unwrap().root_hash,
        vec![0; 32]
    );
    assert_eq!(
        plan.upper,
        crate::plan::UpperSpec::Disk {
            disk: crate::plan::DiskRef::Serial("lp-scratch".into()),
            fs_type: "ext4".into()
        }
    );
}

#[test]
fn json_plans_with_an_encrypted_disk_upper_parse_and_convert() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"containerId": "web-1",
            "layers": [{{"digest": "{DIGEST}", "disk": {{"serial": "lp-layer0"}},
                         "fsType": "FS_TYPE_EROFS"}}],
            "upper": {{"encryptedDisk": {{"disk": {{"serial": "lp-scratch"}}}}}}}}"#
    );
    let req = oneshot::read_plan(&plan_file(dir.path(), &json)).unwrap();
    let plan = crate::server::convert::mount_plan(&req).unwrap();
    plan.validate().unwrap();
    assert_eq!(
        plan.upper,
        crate::plan::UpperSpec::EncryptedDisk {
            disk: crate::plan::DiskRef::Serial("lp-scratch".into()),
        }
    );
    // A misspelt field is an error naming it, not a silently dropped upper.
    let misspelt = json.replace("encryptedDisk", "encryptedDsk");
    let failure = oneshot::read_plan(&plan_file(dir.path(), &misspelt)).unwrap_err();
    assert_eq!(failure.kind, Kind::InvalidArgument);
    assert!(
        failure.message.contains("encryptedDsk"),
        "{}",
        failure.message
    );
}

#[test]
fn bad_json_plans_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let failure = oneshot::read_plan(&plan_file(
        dir.path(),
        r#"{"containerId": "a", "layer": []}"#,
    ))
    .unwrap_err();
    assert_eq!(failure.kind, Kind::InvalidArgument);
    assert!(failure.message.contains("plan.json"), "{}", failure.message);
    assert!(failure.message.contains("layer"), "{}", failure.message);

    let missing_disk = format!(
        r#"{{"containerId": "a", "layers": [{{"digest": "{DIGEST}", "fsType": "FS_TYPE_EROFS"}}],
            "upper": {{"tmpfs": {{"sizeBytes": "4096"}}}}}}"#
    );
    let req = oneshot::read_plan(&plan_file(dir.path(), &missing_disk)).unwrap();
    let failure: Failure = crate::server::convert::mount_plan(&req).unwrap_err().into();
    assert_eq!(failure.kind, Kind::InvalidArgument);
    assert!(
        failure.message.contains("layers[0].disk: missing"),
        "{}",
        failure.message
    );

    let failure = oneshot::read_plan(&dir.path().join("nope.json")).unwrap_err();
    assert_eq!(failure.kind, Kind::NotFound);
    assert!(failure.message.contains("nope.json"), "{}", failure.message);
}

/// The complete plan in docs/protocol.md parses, converts and validates.
#[test]
fn the_documented_plan_is_valid() {
    let doc = include_str!("../../../docs/protocol.md");
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let req = layerpass_protocols::json::parse_mount_request(&doc[start..end]).unwrap();
    let plan = crate::server::convert::mount_plan(&req).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.container_id, "web");
    assert_eq!(plan.layers.len(), 3);
    assert!(plan.layers[2].verity.is_none());
    let verity = plan.layers[0].verity.as_ref().unwrap();
    assert_eq!(verity.root_hash, hex::decode("3f5a9c1e".repeat(8)).unwrap());
    assert_eq!((verity.data_blocks, verity.hash_start_block), (2560, 2561));
    assert!(plan.overlay.volatile);
}

/// What the one-shot commands print for an agent error: the message, then its cause once.
#[test]
fn an_agent_failure_names_its_cause_once() {
    use rustix::io::Errno;

    use crate::error::Step;

    let busy = || std::io::Error::from(Errno::BUSY);
    let err = AgentError::io(Step::Unmount, "unmounting rootfs /r", busy()).container("c1");
    let failure = Failure::from(err);
    assert_eq!(failure.kind, Kind::FailedPrecondition);
    assert_eq!(
        failure.message,
        format!("container c1: unmount: unmounting rootfs /r: {}", busy())
    );
}

#[test]
fn run_parses_the_init_scripts_command_line() {
    let cli = parse(&[
        "run",
        "--plan",
        "/layerpass/plan.json",
        "--process",
        "/layerpass/process.json",
        "--status-port",
        "layerpass.status",
        "--stdout-port",
        "layerpass.stdout",
        "--stderr-port",
        "layerpass.stderr",
        "--confidential",
        "--reference-values",
        "/layerpass/reference-values.toml",
        "--require-verity",
    ]);
    let Command::Run(args) = cli.command else {
        panic!("not run: {:?}", cli.command);
    };
    assert_eq!(args.plan, Path::new("/layerpass/plan.json"));
    assert_eq!(args.process, Path::new("/layerpass/process.json"));
    assert_eq!(
        (
            args.status_port.as_str(),
            args.stdout_port.as_str(),
            args.stderr_port.as_str()
        ),
        ("layerpass.status", "layerpass.stdout", "layerpass.stderr")
    );
    assert_eq!(
        args.port_timeout().unwrap(),
        std::time::Duration::from_secs(30)
    );
    assert!(args.policy.confidential && args.policy.require_verity);
    assert_eq!(
        args.policy.reference_values.as_deref(),
        Some(Path::new("/layerpass/reference-values.toml"))
    );
    assert_eq!(args.policy.run_dir, Path::new("/run/layerpass"));

    let Command::Run(args) = parse(&[
        "run",
        "--plan=p",
        "--process=q",
        "--status-port=/tmp/s",
        "--stdout-port=/tmp/o",
        "--stderr-port=/tmp/e",
        "--port-timeout=0.5",
        "--device-timeout=3",
        "--run-dir=/r",
    ])
    .command
    else {
        panic!("not run");
    };
    assert_eq!(
        args.port_timeout().unwrap(),
        std::time::Duration::from_millis(500)
    );
    assert_eq!(
        args.policy.config().unwrap().device_timeout,
        std::time::Duration::from_secs(3)
    );
    assert!(!args.policy.confidential);
    // every port and both files are required
    assert!(
        Cli::try_parse_from(["layerpass-guest", "run", "--plan", "p", "--process", "q"]).is_err()
    );
}

#[test]
fn measure_flags_on_every_command_that_mounts_or_unmounts() {
    use crate::measure::{Backend, MeasureMode};
    let a = serve_args(&[]);
    assert_eq!(a.policy.measure.measure, MeasureMode::Auto);
    assert_eq!(a.policy.measure.pcr, None);
    assert_eq!(
        a.policy.measure.aa_socket,
        Path::new(crate::measure::aa_client::DEFAULT_SOCKET)
    );
    assert_eq!(a.policy.measure.tpm_device, Path::new("/dev/tpmrm0"));
    let a = serve_args(&[
        "--measure",
        "tpm",
        "--pcr",
        "9",
        "--tpm-device",
        "/dev/tpm-x",
    ]);
    assert_eq!(
        a.policy.backend().unwrap(),
        Backend::Tpm {
            device: "/dev/tpm-x".into(),
            pcr: 9
        }
    );
    for cmd in [
        &["mount", "--plan", "p.json"][..],
        &["unmount", "c1"],
        &[
            "run",
            "--plan",
            "p",
            "--process",
            "q",
            "--status-port",
            "s",
            "--stdout-port",
            "o",
            "--stderr-port",
            "e",
        ],
    ] {
        let mut all = cmd.to_vec();
        all.extend(["--measure", "log", "--pcr", "3", "--allow-unmeasured"]);
        let policy = match parse(&all).command {
            Command::Mount(a) => a.policy,
            Command::Unmount(a) => a.policy,
            Command::Run(a) => a.policy,
            other => panic!("{other:?}"),
        };
        assert_eq!(policy.measure.measure, MeasureMode::Log);
        assert_eq!(policy.measure.pcr, Some(3));
        assert!(policy.measure.allow_unmeasured);
    }
    assert!(
        Cli::try_parse_from(["layerpass-guest", "serve", "--measure", "ima"]).is_err(),
        "an unknown mode"
    );
}

#[test]
fn measure_flag_errors_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let flags = |extra: &[&str]| {
        let mut all = vec!["--aa-socket", missing, "--tpm-device", missing];
        all.extend_from_slice(extra);
        serve_args(&all)
    };
    // A DRTM PCR: the extend could never succeed from Linux.
    let f = flags(&["--measure", "tpm", "--pcr", "17"])
        .policy
        .backend()
        .unwrap_err();
    assert_eq!(f.kind, Kind::InvalidArgument);
    assert!(f.message.contains("TPM_RC_LOCALITY"), "{}", f.message);
    // Confidential auto with neither backend: refused, and the message names the way out.
    let f = flags(&["--confidential", "--reference-values", "/r.toml"])
        .policy
        .backend()
        .unwrap_err();
    assert_eq!(f.kind, Kind::FailedPrecondition);
    assert!(f.message.contains("--measure log"), "{}", f.message);
    assert_eq!(
        flags(&["--confidential", "--measure", "log"])
            .policy
            .backend()
            .unwrap(),
        crate::measure::Backend::Log
    );
    // Not confidential: auto settles for the log.
    assert_eq!(
        flags(&[]).policy.backend().unwrap(),
        crate::measure::Backend::Log
    );
    // --allow-unmeasured means nothing outside confidential mode.
    let f = flags(&["--allow-unmeasured"]).policy.backend().unwrap_err();
    assert_eq!(f.kind, Kind::InvalidArgument);
}
