//! Measured layers in a real guest with a software TPM (QEMU `tpm-tis` on swtpm, Debian
//! 6.1 cloud kernel), one boot. The guest agent, confidential, `--measure tpm`, mounts a
//! three-layer image; the test reads PCR 14 from sysfs and `<run_dir>/eventlog` from the
//! guest's console, and `layerpass attest verify` accepts them against the reference
//! values. A plan with a layer outside the reference values is refused and changes neither
//! the register nor the log. The unmount is measured too. On the host: the same log with
//! one byte of one event's content changed is rejected naming that event; reference
//! values missing a layer reject its event.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use layerpass::plan::{PlannedLayer, Upper};
use layerpass_test_support::swtpm::Swtpm;
use layerpass_tests::plans;
use layerpass_tests::tools::run;
use layerpass_tests::vm::{
    BOOT_TIMEOUT, Initramfs, TestImage, VmBuilder, assets, require_vm_tools, static_binary,
};
use layerpass_types::attest::eventlog;

const SCRIPT: &str = r#"
G=/bin/layerpass-guest
C="--confidential --measure tpm --reference-values /refs.toml"
PCR=/sys/class/tpm/tpm0/pcr-sha256/14
LOG=/run/layerpass/eventlog
hexlog() { if [ -e $LOG ]; then od -An -v -tx1 $LOG | tr -d ' \n'; fi; echo; }
mkdir -p /run/layerpass/rootfs
echo "TPM $(ls /dev/tpmrm0)"
echo "PCR-BOOT $(cat $PCR)"
r=$($G mount $C --plan /plans/good.json)
echo "MOUNTED $(cat "$r/top.txt") $(cat "$r/mid.txt") $(cat "$r/base.txt")"
echo "PCR-MOUNTED $(cat $PCR)"
echo "LOG-MOUNTED $(hexlog)"
if $G mount $C --plan /plans/unlisted.json >/tmp/out 2>/tmp/err; then
  echo "UNLISTED rc=0"
else
  echo "UNLISTED rc=$? $(tail -n 1 /tmp/err)"
fi
echo "DM-AFTER-UNLISTED $(ls /sys/block | grep -c '^dm-' || true)"
echo "PCR-UNLISTED $(cat $PCR)"
echo "LOG-UNLISTED $(hexlog)"
$G unmount $C good
echo "PCR-UNMOUNTED $(cat $PCR)"
echo "LOG-UNMOUNTED $(hexlog)"
"#;

/// A converted layer holding `name.txt` = "`name`\n": (blob, diff ID, root hash).
fn layer(d: &Path, name: &str) -> (PathBuf, String, String) {
    let tree = d.join(format!("tree-{name}"));
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join(format!("{name}.txt")), format!("{name}\n")).unwrap();
    let tar = d.join(format!("{name}.tar"));
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .unwrap();
    let blob = d.join(format!("{name}.erofs"));
    let report = layerpass::erofs::convert_layer(
        fs::File::open(&tar).unwrap(),
        &blob,
        &layerpass::erofs::ConvertOptions::default(),
    )
    .unwrap();
    (blob, report.diff_id, report.root_hash.unwrap())
}

fn refs(roots: &[&str]) -> String {
    let quoted: Vec<String> = roots.iter().map(|r| format!("\"{r}\"")).collect();
    format!("root_hashes = [{}]\n", quoted.join(", "))
}

/// `layerpass attest verify` of `log` against `pcr` (and reference values `refs`).
fn verify(host: &Path, d: &Path, name: &str, log: &[u8], pcr: &str, refs: &Path) -> Output {
    let path = d.join(name);
    fs::write(&path, log).unwrap();
    Command::new(host)
        .args(["attest", "verify", "--event-log"])
        .arg(&path)
        .args(["--pcr", pcr, "--pcr-index", "14", "--reference-values"])
        .arg(refs)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tpm_measured_layers_verify_and_unlisted_or_tampered_evidence_does_not() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(tpm) = Swtpm::for_qemu(d) else {
        return;
    };
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();

    let layers = ["top", "mid", "base", "stranger"].map(|n| layer(d, n));
    let planned: Vec<PlannedLayer> = layers
        .iter()
        .enumerate()
        .map(|(i, (blob, digest, _))| plans::on_disk(blob, digest, &format!("lp-l{i}")).unwrap())
        .collect();
    let tmpfs = || Upper::Tmpfs {
        size_bytes: 16 << 20,
    };
    let good = plans::plan_json("good", &planned[..3], tmpfs()).unwrap();
    let unlisted_layers = [planned[3].clone(), planned[1].clone(), planned[2].clone()];
    let unlisted = plans::plan_json("unlisted", &unlisted_layers, tmpfs()).unwrap();
    let roots: Vec<&str> = layers.iter().map(|(_, _, r)| r.as_str()).collect();
    let refs_text = refs(&roots[..3]);
    let refs_path = d.join("refs.toml");
    fs::write(&refs_path, &refs_text).unwrap();

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    let mut initramfs = Initramfs::standard(&kernel).unwrap();
    initramfs
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .file("/refs.toml", refs_text.as_bytes(), 0o644)
        .file("/plans/good.json", &good, 0o644)
        .file("/plans/unlisted.json", &unlisted, 0o644);
    initramfs.test_script(SCRIPT).write(&initrd).unwrap();
    let mut builder = VmBuilder::new("attest", &kernel, &initrd).tpm(tpm.ctrl_socket());
    for (i, (blob, _, _)) in layers.iter().enumerate() {
        builder = builder.disk(blob, &format!("lp-l{i}"));
    }
    let mut vm = builder.spawn().unwrap();
    vm.wait_result(BOOT_TIMEOUT).unwrap();

    let line = |prefix: &str| {
        let lines = vm.lines_with(&format!("{prefix} "));
        assert_eq!(lines.len(), 1, "{prefix}: {lines:?}");
        lines[0].trim().to_owned()
    };
    let bytes = |prefix: &str| hex::decode(line(prefix)).unwrap();
    assert_eq!(line("TPM"), "/dev/tpmrm0");
    assert_eq!(line("PCR-BOOT"), "0".repeat(64), "PCR 14 is unused at boot");
    assert_eq!(line("MOUNTED"), "top mid base");

    // Three MountLayer events, top first, replaying to the register.
    let pcr_mounted = line("PCR-MOUNTED").to_lowercase();
    let log_mounted = bytes("LOG-MOUNTED");
    let entries = eventlog::parse(&log_mounted).unwrap();
    let listed: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let ev = e.event.as_ref().unwrap();
            (ev.operation.clone(), ev.content.clone())
        })
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for ((op, content), (_, digest, root)) in listed.iter().zip(&layers) {
        assert_eq!(op, "MountLayer");
        assert!(
            content.contains(&format!(r#""root_hash":"{root}""#)),
            "{content}"
        );
        assert!(
            content.contains(&format!(r#""digest":"{digest}""#)),
            "{content}"
        );
        assert!(content.contains(r#""container_id":"good""#), "{content}");
    }
    assert_eq!(hex::encode(eventlog::replay(&entries, 14)), pcr_mounted);
    let out = verify(
        &host_bin,
        d,
        "mounted.log",
        &log_mounted,
        &pcr_mounted,
        &refs_path,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (_, digest, root) in &layers[..3] {
        assert!(
            stdout.contains(&format!(
                "MountLayer container good digest {digest} root hash {root}"
            )),
            "{stdout}"
        );
    }

    // The unlisted layer: refused by the policy before anything is set up; the register
    // and the log are as they were.
    let unlisted_line = line("UNLISTED");
    assert!(
        unlisted_line.starts_with("rc=14 PermissionDenied: ") && unlisted_line.contains(roots[3]),
        "{unlisted_line}"
    );
    assert_eq!(
        line("DM-AFTER-UNLISTED"),
        "3",
        "only the good container's layers"
    );
    assert_eq!(line("PCR-UNLISTED").to_lowercase(), pcr_mounted);
    assert_eq!(bytes("LOG-UNLISTED"), log_mounted);

    // The unmount is measured: three UnmountLayer events after the three mounts.
    let pcr_final = line("PCR-UNMOUNTED").to_lowercase();
    let log_final = bytes("LOG-UNMOUNTED");
    assert!(log_final.starts_with(&log_mounted));
    let entries = eventlog::parse(&log_final).unwrap();
    let ops: Vec<String> = entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().operation.clone())
        .collect();
    assert_eq!(
        ops,
        ["MountLayer"; 3]
            .into_iter()
            .chain(["UnmountLayer"; 3])
            .collect::<Vec<_>>()
    );
    let out = verify(
        &host_bin,
        d,
        "final.log",
        &log_final,
        &pcr_final,
        &refs_path,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // One byte of event 1's content (the last digit of its salt): rejected, naming it.
    let e1 = &entries[1];
    let at = usize::try_from(e1.offset).unwrap() + e1.len - 3;
    let mut tampered = log_final.clone();
    assert!(tampered[at].is_ascii_hexdigit(), "{}", tampered[at]);
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let out = verify(
        &host_bin,
        d,
        "tampered.log",
        &tampered,
        &pcr_final,
        &refs_path,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("event 1 at offset {}", e1.offset)),
        "{}",
        text(&out)
    );

    // Reference values without the middle layer reject its event.
    let partial = d.join("partial.toml");
    fs::write(&partial, refs(&[roots[0], roots[2]])).unwrap();
    let out = verify(&host_bin, d, "final2.log", &log_final, &pcr_final, &partial);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("event 1 at offset") && stderr.contains(roots[1]),
        "{}",
        text(&out)
    );
    drop(vm);
    drop(tpm);
}
