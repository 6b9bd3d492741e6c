//! The guest agent's ttrpc service over a virtio-serial port in a real Linux guest (QEMU,
//! Debian cloud kernel): three EROFS layers with dm-verity served as vhost-user-blk layer
//! disks by `layerpass blk serve`; the host sends `Mount` (and a plan naming a disk that
//! never appears, and a duplicate), checks the response and `List`, lets the guest read
//! the merged rootfs, reconnects (a fresh ttrpc session through the serial bridge), then
//! `Unmount`s; the guest confirms the content and that no mount and no dm device is left.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use layerpass::erofs::{ConvertOptions, convert_layer};
use layerpass::plan::{LayerPlacement, PlannedLayer, Upper};
use layerpass_protocols::status::Kind;
use layerpass_protocols::v1::guest as pb;
use layerpass_tests::guest_client::GuestClient;
use layerpass_tests::plans;
use layerpass_tests::tools::run;
use layerpass_tests::vm::{
    BOOT_TIMEOUT, Initramfs, TestImage, VhostUserBlk, VmBuilder, assets, require_vm_tools,
    serve_blk, static_binary,
};

const PORT: &str = "layerpass.0";
/// Bounds each call (the longest, Mount with a missing disk, waits 5 s in the guest).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const ROOTFS: &str = "/run/layerpass/rootfs/web";

const SCRIPT: &str = r#"
dump() { sed 's/^/AGENT: /' /tmp/agent.log; }
lp_port layerpass.0 >/dev/null
layerpass-guest -v serve --transport virtio-serial --device layerpass.0 --device-timeout 5 \
  >/tmp/agent.log 2>&1 &
agent=$!
echo GUEST-AGENT-UP
r=/run/layerpass/rootfs/web
if ! lp_wait 300 grep -q " $r overlay " /proc/mounts; then dump; exit 1; fi
echo "GUEST-FILE hello $(cat $r/app/hello)"
echo "GUEST-FILE mid $(cat $r/app/mid)"
echo "GUEST-FILE base $(cat $r/base.txt)"
if [ -e $r/app/gone ]; then echo "GUEST-FILE gone present"; else echo "GUEST-FILE gone absent"; fi
echo "GUEST-DM $(ls /sys/block | grep -c '^dm-')"
echo written > $r/new.txt
echo "GUEST-FILE new $(cat $r/new.txt)"
echo GUEST-READ-DONE
# The host closes its first connection; the bridge logs the disconnect.
if ! lp_wait 120 sh -c '[ "$(grep -c "host disconnected" /tmp/agent.log)" -ge 1 ]'; then dump; exit 1; fi
echo GUEST-SAW-DISCONNECT
# The host closes its second connection after its last call.
if ! lp_wait 300 sh -c '[ "$(grep -c "host disconnected" /tmp/agent.log)" -ge 2 ]'; then dump; exit 1; fi
echo "GUEST-UNMOUNTED dm=$(ls /sys/block | grep -c '^dm-') mounts=$(grep -c /run/layerpass /proc/mounts)"
kill $agent
wait $agent
echo "GUEST-AGENT-EXIT $?"
"#;

/// Writes `files` (path, contents) under a fresh directory and tars it.
fn layer_tar(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(name);
    for (path, contents) in files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap();
    }
    let tar = dir.join(format!("{name}.tar"));
    run(Command::new("tar")
        .arg("--owner=0")
        .arg("--group=0")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .unwrap();
    tar
}

/// The request for `id`: the host's plan builder over the layer files, tmpfs upper.
fn request(id: &str, layers: &[PlannedLayer]) -> pb::MountRequest {
    plans::request(
        id,
        layers,
        Upper::Tmpfs {
            size_bytes: 16 << 20,
        },
    )
    .unwrap()
}

#[test]
fn host_mounts_lists_and_unmounts_a_three_layer_rootfs_over_virtio_serial() {
    if !require_vm_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_bin = static_binary("layerpass", "layerpass").unwrap();
    let guest_bin = static_binary("layerpass-guest", "layerpass-guest").unwrap();

    // Top first: the top layer shadows app/hello, the middle one deletes app/gone.
    let tars = [
        layer_tar(d, "top", &[("app/hello", "hello from the top layer")]),
        layer_tar(
            d,
            "mid",
            &[
                ("app/hello", "hello from the middle layer"),
                ("app/mid", "middle"),
                ("app/.wh.gone", ""),
            ],
        ),
        layer_tar(
            d,
            "base",
            &[("base.txt", "base"), ("app/gone", "deleted above")],
        ),
    ];
    let mut reports = Vec::new();
    let mut layers = Vec::new();
    let mut servers = Vec::new();
    let mut devices = Vec::new();
    for (i, tar) in tars.iter().enumerate() {
        let blob = d.join(format!("layer{i}.erofs"));
        let report = convert_layer(
            fs::File::open(tar).unwrap(),
            &blob,
            &ConvertOptions::default(),
        )
        .unwrap();
        let socket = d.join(format!("layer{i}.sock"));
        let serial = format!("lp-layer{i}");
        servers.push(
            serve_blk(
                &host_bin,
                &socket,
                &["--layer", blob.to_str().unwrap(), "--serial", &serial],
            )
            .unwrap(),
        );
        devices.push(VhostUserBlk {
            socket,
            num_queues: Some(1),
            reconnect_ms: None,
        });
        layers.push(plans::on_disk(&blob, &report.diff_id, &serial).unwrap());
        reports.push(report);
    }

    let kernel = assets::cloud_kernel().unwrap();
    let initrd = d.join("initrd.gz");
    Initramfs::standard(&kernel)
        .unwrap()
        .host_file("/bin/layerpass-guest", &guest_bin, 0o755)
        .test_script(SCRIPT)
        .write(&initrd)
        .unwrap();
    let mut builder = VmBuilder::new("guest-ttrpc", &kernel, &initrd).serial_port(PORT);
    for dev in devices {
        builder = builder.vhost_user_blk(dev);
    }
    let mut vm = builder.spawn().unwrap();
    let stream = vm.connect_port(PORT, BOOT_TIMEOUT).unwrap();
    vm.wait_for("GUEST-AGENT-UP", BOOT_TIMEOUT).unwrap();
    let client = GuestClient::new(stream, CALL_TIMEOUT).unwrap();

    let status = client.status().unwrap();
    assert_eq!((status.containers, status.layers), (0, 0));
    assert!(!status.require_verity && !status.confidential);

    // A disk that never appears: NotFound after the agent's 5 s device timeout.
    let mut absent = layers.clone();
    absent[2].placement = LayerPlacement::Disk {
        serial: "lp-absent".into(),
        logical_block_size: 4096,
    };
    let (kind, message) = client.mount(&request("web", &absent)).unwrap_err();
    assert_eq!(kind, Kind::NotFound, "{message}");
    assert!(message.contains("lp-absent"), "{message}");
    assert!(message.contains(&reports[2].diff_id), "{message}");

    let resp = client.mount(&request("web", &layers)).unwrap();
    assert_eq!(resp.container_id, "web");
    assert_eq!(resp.rootfs, ROOTFS);
    assert_eq!(resp.layers.len(), 3);
    for (got, report) in resp.layers.iter().zip(&reports) {
        assert_eq!(got.digest, report.diff_id);
        assert_eq!(&got.root_hash, report.root_hash.as_ref().unwrap());
        assert!(got.device.starts_with("/dev/mapper/"), "{got:?}");
        assert!(!got.shared);
    }

    let (kind, message) = client.mount(&request("web", &layers)).unwrap_err();
    assert_eq!(kind, Kind::AlreadyExists, "{message}");

    let list = client.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].container_id, "web");
    assert_eq!(list[0].rootfs, ROOTFS);
    assert_eq!(list[0].layers, resp.layers);
    let status = client.status().unwrap();
    assert_eq!((status.containers, status.layers), (1, 3));

    vm.wait_for("GUEST-READ-DONE", BOOT_TIMEOUT).unwrap();

    // A second host connection gets a fresh ttrpc session and sees the same state.
    // Reconnect only once the guest has seen the disconnect: a host that reconnects
    // faster may find the bridge still on the old ttrpc connection (which also works,
    // but then the guest logs one disconnect, not two).
    drop(client);
    vm.wait_for("GUEST-SAW-DISCONNECT", BOOT_TIMEOUT).unwrap();
    let stream = vm.connect_port(PORT, BOOT_TIMEOUT).unwrap();
    let client = GuestClient::new(stream, CALL_TIMEOUT).unwrap();
    let list = client.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].layers, resp.layers);
    client.unmount("web").unwrap();
    client.unmount("web").unwrap();
    assert!(client.list().unwrap().is_empty());
    let status = client.status().unwrap();
    assert_eq!((status.containers, status.layers), (0, 0));
    // Closing the connection tells the guest script the host is done.
    drop(client);
    vm.wait_result(BOOT_TIMEOUT).unwrap();

    assert_eq!(
        vm.lines_with("GUEST-FILE "),
        [
            "hello hello from the top layer",
            "mid middle",
            "base base",
            "gone absent",
            "new written",
        ]
    );
    assert_eq!(vm.lines_with("GUEST-DM "), ["3"]);
    assert_eq!(vm.lines_with("GUEST-UNMOUNTED "), ["dm=0 mounts=0"]);
    assert_eq!(vm.lines_with("GUEST-AGENT-EXIT "), ["0"]);
    drop(servers);
}
