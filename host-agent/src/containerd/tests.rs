//! The shapes of `containerd-kata-nerdbox.md` §5.2, §5.4 and §5.5, and each refusal.

use std::path::{Path, PathBuf};

use super::template::{Piece, expand};
use super::*;

const R: &str = "/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots";

fn m(kind: &str, source: &str, options: &[&str]) -> MountEntry {
    MountEntry {
        kind: kind.to_owned(),
        source: source.to_owned(),
        target: None,
        options: options.iter().map(|&o| o.to_owned()).collect(),
    }
}

fn blob(id: u32) -> String {
    format!("{R}/{id}/layer.erofs")
}

/// An erofs layer of snapshot `id` with its sidecar, as containerd 2.3+ writes it.
fn erofs(id: u32) -> MountEntry {
    let verity = format!("X-containerd.dmverity={R}/{id}/layer.erofs.dmverity");
    m("erofs", &blob(id), &["ro", "loop", &verity])
}

fn layer(id: u32, mount_index: usize) -> ContainerdLayer {
    ContainerdLayer {
        blob: PathBuf::from(blob(id)),
        verity: LayerVerity::Sidecar(PathBuf::from(format!("{R}/{id}/layer.erofs.dmverity"))),
        mount_index,
    }
}

fn overlay(options: &[&str]) -> MountEntry {
    m("format/mkdir/overlay", "overlay", options)
}

fn err(mounts: &[MountEntry]) -> MountListError {
    parse(mounts).expect_err("the list must be refused")
}

/// The exact list of §5.4: block mode, 3 layers, dm-verity.
const EXAMPLE_5_4: &str = r#"[
 {"type":"mkfs/ext4","source":"/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/7/rwlayer.img",
  "options":["X-containerd.mkfs.fs=ext4","X-containerd.mkfs.size=21474836480","rw","loop"]},
 {"type":"erofs","source":"/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/3/layer.erofs",
  "options":["ro","loop","X-containerd.dmverity=/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/3/layer.erofs.dmverity"]},
 {"type":"erofs","source":"/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/2/layer.erofs",
  "options":["ro","loop","X-containerd.dmverity=/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/2/layer.erofs.dmverity"]},
 {"type":"erofs","source":"/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/1/layer.erofs",
  "options":["ro","loop","X-containerd.dmverity=/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/1/layer.erofs.dmverity"]},
 {"type":"format/mkdir/overlay","source":"overlay",
  "options":["X-containerd.mkdir.path={{ mount 0 }}/upper:0755","X-containerd.mkdir.path={{ mount 0 }}/work:0755",
             "workdir={{ mount 0 }}/work","upperdir={{ mount 0 }}/upper","lowerdir={{ overlay 1 3 }}"]}
]"#;

fn rwlayer() -> PathBuf {
    PathBuf::from(format!("{R}/7/rwlayer.img"))
}

#[test]
fn block_mode_example_of_5_4() {
    let entries = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    assert_eq!(entries.len(), 5);
    let rootfs = parse(&entries).unwrap();
    assert_eq!(
        rootfs,
        ContainerdRootfs {
            layers: vec![layer(3, 1), layer(2, 2), layer(1, 3)],
            upper: ContainerdUpper::BlockImage {
                path: rwlayer(),
                fs_type: "ext4".into(),
                create: Some(BlockCreate {
                    size: 21_474_836_480,
                    uuid: None
                }),
            },
            overlay: OverlayOptions::default(),
        }
    );
}

#[test]
fn block_mode_after_activate_of_5_5() {
    let mut entries = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    entries[0] = serde_json::from_str(&format!(
        r#"{{"type":"ext4","source":"{R}/7/rwlayer.img","options":["rw","loop"]}}"#
    ))
    .unwrap();
    let rootfs = parse(&entries).unwrap();
    assert_eq!(
        rootfs.upper,
        ContainerdUpper::BlockImage {
            path: rwlayer(),
            fs_type: "ext4".into(),
            create: None,
        }
    );
    assert_eq!(rootfs.layers, vec![layer(3, 1), layer(2, 2), layer(1, 3)]);
}

#[test]
fn block_mode_one_layer_and_uuid() {
    // n == 1: `lowerdir={{ mount 1 }}`; a UUID and a size with a unit.
    let list = [
        m(
            "mkfs/ext4",
            &rwlayer().to_string_lossy(),
            &[
                "X-containerd.mkfs.size=64MiB",
                "X-containerd.mkfs.uuid=0f3a3b5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                "rw",
                "loop",
            ],
        ),
        erofs(3),
        overlay(&[
            "workdir={{ mount 0 }}/work",
            "upperdir={{ mount 0 }}/upper",
            "lowerdir={{ mount 1 }}",
        ]),
    ];
    let rootfs = parse(&list).unwrap();
    assert_eq!(rootfs.layers, vec![layer(3, 1)]);
    let ContainerdUpper::BlockImage { create, .. } = rootfs.upper else {
        panic!("{:?}", rootfs.upper)
    };
    assert_eq!(
        create,
        Some(BlockCreate {
            size: 64 << 20,
            uuid: Some("0f3a3b5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into())
        })
    );
}

#[test]
fn single_erofs_is_a_read_only_layer() {
    let rootfs = parse(&[erofs(5)]).unwrap();
    assert_eq!(rootfs.layers, vec![layer(5, 0)]);
    assert_eq!(rootfs.upper, ContainerdUpper::ReadOnly);
    // Without dm-verity (`dmverity_mode = "off"`, or no sidecar in `auto`).
    let rootfs = parse(&[m("erofs", &blob(5), &["ro", "loop"])]).unwrap();
    assert_eq!(rootfs.layers[0].verity, LayerVerity::Off);
}

#[test]
fn view_of_several_layers_is_read_only() {
    let list = [
        erofs(3),
        erofs(2),
        erofs(1),
        overlay(&["lowerdir={{ overlay 0 2 }}"]),
    ];
    let rootfs = parse(&list).unwrap();
    assert_eq!(rootfs.layers, vec![layer(3, 0), layer(2, 1), layer(1, 2)]);
    assert_eq!(rootfs.upper, ContainerdUpper::ReadOnly);
}

#[test]
fn active_non_block_has_host_directories() {
    let work = format!("workdir={R}/7/work");
    let upper = format!("upperdir={R}/7/fs");
    let host = ContainerdUpper::HostDir {
        upperdir: PathBuf::from(format!("{R}/7/fs")),
        workdir: PathBuf::from(format!("{R}/7/work")),
    };
    let list = [
        erofs(2),
        erofs(1),
        overlay(&[&work, &upper, "lowerdir={{ overlay 0 1 }}"]),
    ];
    let rootfs = parse(&list).unwrap();
    assert_eq!(rootfs.layers, vec![layer(2, 0), layer(1, 1)]);
    assert_eq!(rootfs.upper, host);
    // n == 1: `lowerdir={{ mount 0 }}`.
    let list = [
        erofs(1),
        overlay(&[&work, &upper, "lowerdir={{ mount 0 }}"]),
    ];
    assert_eq!(parse(&list).unwrap().upper, host);
}

#[test]
fn overlay_type_variants_accept_templates() {
    for kind in [
        "format/mkdir/overlay",
        "format/overlay",
        "mkdir/overlay",
        "overlay",
    ] {
        let list = [
            erofs(2),
            erofs(1),
            m(kind, "overlay", &["lowerdir={{ overlay 0 1 }}"]),
        ];
        assert_eq!(parse(&list).unwrap().layers.len(), 2, "{kind}");
    }
}

#[test]
fn overlay_range_follows_format_go() {
    // a > b counts down: `{{ overlay 2 0 }}` is mounts 2, 1, 0.
    let list = [
        erofs(3),
        erofs(2),
        erofs(1),
        overlay(&["lowerdir={{ overlay 2 0 }}"]),
    ];
    assert_eq!(
        parse(&list).unwrap().layers,
        vec![layer(1, 2), layer(2, 1), layer(3, 0)]
    );
    // Single references joined by `:`, and `{{ overlay i i }}`, name layers too.
    let list = [
        erofs(3),
        erofs(2),
        erofs(1),
        overlay(&["lowerdir={{mount 1}}:{{ overlay 0 0 }}:{{\tmount 2 }}"]),
    ];
    assert_eq!(
        parse(&list).unwrap().layers,
        vec![layer(2, 1), layer(3, 0), layer(1, 2)]
    );
}

#[test]
fn template_pieces() {
    assert_eq!(
        expand("{{ mount 0 }}/upper", 1).unwrap(),
        vec![Piece::Mount(0), Piece::Text("/upper")]
    );
    assert_eq!(
        expand("a{{ overlay 3 1 }}b", 4).unwrap(),
        vec![
            Piece::Text("a"),
            Piece::Overlay { start: 3, end: 1 },
            Piece::Text("b")
        ]
    );
    assert_eq!(
        Piece::Overlay { start: 3, end: 1 }
            .mounts()
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert_eq!(
        expand("plain }} text", 0).unwrap(),
        vec![Piece::Text("plain }} text")]
    );
}

#[test]
fn dmverity_option_forms() {
    let on = parse(&[m("erofs", &blob(4), &["ro", "X-containerd.dmverity=on"])]).unwrap();
    assert_eq!(
        on.layers[0].verity,
        LayerVerity::Sidecar(PathBuf::from(format!("{}.dmverity", blob(4))))
    );
    let off = parse(&[m("erofs", &blob(4), &["X-containerd.dmverity=off"])]).unwrap();
    assert_eq!(off.layers[0].verity, LayerVerity::Off);
    let e = err(&[m(
        "erofs",
        &blob(4),
        &["X-containerd.dmverity=layer.dmverity"],
    )]);
    assert!(matches!(e, MountListError::BadPath { index: 0, .. }), "{e}");
    let e = err(&[m(
        "erofs",
        &blob(4),
        &["X-containerd.dmverity=on", "X-containerd.dmverity=off"],
    )]);
    assert!(matches!(e, MountListError::DuplicateOption { .. }), "{e}");
}

#[test]
fn overlay_options_known_harmless_and_unknown() {
    let list = [
        erofs(2),
        erofs(1),
        overlay(&[
            "lowerdir={{ overlay 0 1 }}",
            "volatile",
            "userxattr",
            "index=off",
            "metacopy=on",
            "redirect_dir=follow",
            "xino=auto",
            "nfs_export=off",
            "ro",
        ]),
    ];
    let rootfs = parse(&list).unwrap();
    assert_eq!(
        rootfs.overlay,
        OverlayOptions {
            volatile: true,
            userxattr: true
        }
    );
    let mut bad = list.clone();
    bad[2].options.push("casefold".into());
    let e = err(&bad);
    assert_eq!(
        e,
        MountListError::UnknownOption {
            index: 2,
            kind: "overlay".into(),
            text: "casefold".into()
        }
    );
    // `rw` without an upper, `ro` with one.
    let mut rw = list.clone();
    rw[2].options = vec!["lowerdir={{ overlay 0 1 }}".into(), "rw".into()];
    assert!(matches!(err(&rw), MountListError::MisplacedOption { .. }));
}

#[test]
fn bind_of_the_single_layer_is_read_only() {
    let list = [
        erofs(1),
        m("format/bind", "{{ mount 0 }}", &["ro", "rbind"]),
    ];
    let rootfs = parse(&list).unwrap();
    assert_eq!(rootfs.layers, vec![layer(1, 0)]);
    assert_eq!(rootfs.upper, ContainerdUpper::ReadOnly);
    let list = [
        erofs(1),
        m("format/bind", "{{ mount 0 }}", &["rw", "rbind"]),
    ];
    assert!(matches!(err(&list), MountListError::MisplacedOption { .. }));
}

#[test]
fn base_layer_extraction_has_no_layers() {
    let bind = [m("bind", &format!("{R}/1/fs"), &["rw", "rbind"])];
    assert_eq!(
        err(&bind),
        MountListError::NoLayers {
            index: 0,
            kind: "bind".into()
        }
    );
    let block = [
        m(
            "mkfs/ext4",
            &format!("{R}/1/rwlayer.img"),
            &[
                "X-containerd.mkfs.fs=ext4",
                "X-containerd.mkfs.size=67108864",
                "rw",
                "loop",
            ],
        ),
        m(
            "format/mkdir/bind",
            "{{ mount 0 }}/upper",
            &[
                "X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
                "rw",
                "rbind",
            ],
        ),
    ];
    let e = err(&block);
    assert!(
        matches!(e, MountListError::NoLayers { index: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("base-layer extraction"), "{e}");
}

#[test]
fn errors_name_the_index_and_the_text() {
    let cases: Vec<(Vec<MountEntry>, usize, &str)> = vec![
        (vec![erofs(1), m("tmpfs", "none", &[])], 1, "tmpfs"),
        (
            vec![erofs(2), erofs(1), overlay(&["lowerdir={{ source 0 }}"])],
            2,
            "{{ source 0 }}",
        ),
        (
            vec![erofs(2), erofs(1), overlay(&["lowerdir={{ overlay 0 1"])],
            2,
            "{{ overlay 0 1",
        ),
        (
            vec![erofs(2), erofs(1), overlay(&["lowerdir={{ overlay 0 2 }}"])],
            2,
            "{{ overlay 0 2 }}",
        ),
        (
            vec![
                erofs(2),
                erofs(1),
                overlay(&["lowerdir={{ overlay 01 1 }}"]),
            ],
            2,
            "{{ overlay 01 1 }}",
        ),
        (
            vec![erofs(2), erofs(1), overlay(&["lowerdir={{- mount 0 }}"])],
            2,
            "{{- mount 0 }}",
        ),
        (
            vec![
                erofs(2),
                erofs(1),
                overlay(&["lowerdir={{ mount 0 }}:{{ overlay 1 0 }}"]),
            ],
            2,
            "{{ mount 0 }}:{{ overlay 1 0 }}",
        ),
        (
            vec![erofs(2), erofs(1), overlay(&["lowerdir={{ mount 0 }}"])],
            2,
            "{{ mount 0 }}",
        ),
        (
            vec![
                erofs(2),
                erofs(1),
                overlay(&[&format!("lowerdir={R}/2/fs:{R}/1/fs")]),
            ],
            2,
            "/2/fs",
        ),
        (
            vec![m("erofs", "snapshots/1/layer.erofs", &[])],
            0,
            "snapshots/1",
        ),
        (
            vec![m("erofs", &format!("{R}/../1/layer.erofs"), &[])],
            0,
            "/../1",
        ),
        (
            vec![m("erofs", &format!("{R}/1/layer\0.erofs"), &[])],
            0,
            "layer\\0.erofs",
        ),
        (vec![m("erofs", &blob(1), &["ro", "rw"])], 0, "\"rw\""),
        (
            vec![m("erofs", &blob(1), &["X-containerd.fsverity=on"])],
            0,
            "fsverity",
        ),
        (
            vec![m("erofs", &blob(1), &["nouser_xattr"])],
            0,
            "nouser_xattr",
        ),
        (vec![m("erofs", "{{ mount 0 }}", &[])], 0, "{{ mount 0 }}"),
        (
            vec![m("erofs", &blob(1), &["X-containerd.mkfs.size=1"])],
            0,
            "mkfs.size",
        ),
        (
            vec![erofs(1), overlay(&["lowerdir={{ mount 0 }}"]), erofs(2)],
            2,
            "erofs",
        ),
        (
            vec![
                erofs(1),
                erofs(2),
                overlay(&["lowerdir={{ overlay 0 1 }}", "uidmap=0:1000:65536"]),
            ],
            2,
            "uidmap=0:1000:65536",
        ),
        (
            vec![m(
                "erofs",
                &blob(1),
                &["ro", "loop", &format!("device={R}/2/layer.erofs")],
            )],
            0,
            "device=",
        ),
        (vec![erofs(1), erofs(2)], 1, "erofs"),
    ];
    for (list, index, text) in cases {
        let e = err(&list);
        let shown = e.to_string();
        assert_eq!(e.index(), Some(index), "{shown}");
        assert!(shown.contains(&format!("mount {index}")), "{shown}");
        assert!(shown.contains(text), "{text:?} not in: {shown}");
    }
}

#[test]
fn fsmeta_form_is_refused_with_the_reason() {
    let list = [
        erofs(3),
        m(
            "erofs",
            &format!("{R}/2/fsmeta.erofs"),
            &[
                "ro",
                "loop",
                &format!("device={}", blob(1)),
                &format!("device={}", blob(2)),
            ],
        ),
        overlay(&["lowerdir={{ overlay 0 1 }}"]),
    ];
    let e = err(&list);
    assert!(matches!(e, MountListError::Fsmeta { index: 1, .. }), "{e}");
    assert!(e.to_string().contains("no dm-verity"), "{e}");
    assert!(e.to_string().contains("one erofs mount per layer"), "{e}");
}

#[test]
fn template_targets_must_be_layers_and_the_block_image() {
    let mut list = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    // The lowerdir takes in the block image.
    list[4].options[4] = "lowerdir={{ overlay 0 3 }}".into();
    assert!(matches!(
        err(&list),
        MountListError::TemplateNotLayer {
            index: 4,
            mount: 0,
            ..
        }
    ));
    // A layer left out; a layer twice.
    list[4].options[4] = "lowerdir={{ overlay 1 2 }}".into();
    assert!(matches!(
        err(&list),
        MountListError::MissingLayer {
            index: 4,
            mount: 3,
            ..
        }
    ));
    list[4].options[4] = "lowerdir={{ overlay 1 3 }}:{{ mount 2 }}".into();
    assert!(matches!(
        err(&list),
        MountListError::DuplicateLayer {
            index: 4,
            mount: 2,
            ..
        }
    ));
    // The upper in a layer, or elsewhere in the image.
    let mut upper = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    upper[4].options[3] = "upperdir={{ mount 1 }}/upper".into();
    let e = err(&upper);
    assert!(
        matches!(e, MountListError::BadUpper { index: 4, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not the block image"), "{e}");
    upper[4].options[3] = "upperdir={{ mount 0 }}/elsewhere".into();
    assert!(matches!(
        err(&upper),
        MountListError::BadUpper { index: 4, .. }
    ));
    // A mkdir path outside the image.
    let mut mkdir = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    mkdir[4].options[0] = "X-containerd.mkdir.path=/tmp/upper:0755".into();
    assert!(matches!(
        err(&mkdir),
        MountListError::BadUpper { index: 4, .. }
    ));
    mkdir[4].options[0] = "X-containerd.mkdir.path={{ mount 0 }}/upper:0999".into();
    assert!(matches!(
        err(&mkdir),
        MountListError::BadOptionValue { index: 4, .. }
    ));
    // mkdir options need the `mkdir/` transform.
    let mut plain = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    plain[4].kind = "format/overlay".into();
    assert!(matches!(
        err(&plain),
        MountListError::MisplacedOption { index: 4, .. }
    ));
    // Without upperdir the block image is unused.
    let mut unused = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    unused[4].options = vec!["lowerdir={{ overlay 1 3 }}".into()];
    assert!(matches!(
        err(&unused),
        MountListError::UnusedUpper { index: 0, .. }
    ));
}

#[test]
fn upper_is_single_and_first() {
    let block = parse_json(EXAMPLE_5_4.as_bytes()).unwrap()[0].clone();
    let list = [
        block.clone(),
        block.clone(),
        erofs(1),
        overlay(&["lowerdir={{ mount 2 }}"]),
    ];
    assert!(matches!(
        err(&list),
        MountListError::SecondUpper { index: 1, .. }
    ));
    let list = [erofs(1), block, overlay(&["lowerdir={{ mount 0 }}"])];
    assert!(matches!(
        err(&list),
        MountListError::UpperNotFirst { index: 1, .. }
    ));
    // A host upper next to a block image is a second upper in disguise: refused.
    let mut host = parse_json(EXAMPLE_5_4.as_bytes()).unwrap();
    host[4].options[3] = format!("upperdir={R}/7/fs");
    assert!(matches!(
        err(&host),
        MountListError::BadUpper { index: 4, .. }
    ));
    // A templated upper with no block image.
    let list = [
        erofs(1),
        erofs(2),
        overlay(&[
            "upperdir={{ mount 0 }}/upper",
            "workdir={{ mount 0 }}/work",
            "lowerdir={{ overlay 0 1 }}",
        ]),
    ];
    let e = err(&list);
    assert!(
        matches!(e, MountListError::BadUpper { index: 2, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("names mount 0, a \"erofs\" mount"),
        "{e}"
    );
}

#[test]
fn block_image_options() {
    let img = rwlayer();
    let img = img.to_string_lossy();
    let run = |kind: &str, options: &[&str]| {
        parse(&[
            m(kind, &img, options),
            erofs(1),
            overlay(&[
                "workdir={{ mount 0 }}/work",
                "upperdir={{ mount 0 }}/upper",
                "lowerdir={{ mount 1 }}",
            ]),
        ])
    };
    assert!(run("mkfs/ext4", &["X-containerd.mkfs.size=1g", "rw"]).is_ok());
    for (options, what) in [
        (&["rw"][..], "missing size"),
        (&["X-containerd.mkfs.size=0"][..], "zero size"),
        (&["X-containerd.mkfs.size=1.5g"][..], "fraction"),
        (
            &["X-containerd.mkfs.size=20000000000000000000"][..],
            "overflow",
        ),
        (
            &["X-containerd.mkfs.size=1", "X-containerd.mkfs.fs=xfs"][..],
            "xfs",
        ),
        (
            &["X-containerd.mkfs.size=1", "X-containerd.mkfs.uuid=random"][..],
            "uuid",
        ),
        (
            &["X-containerd.mkfs.size=1", "X-containerd.mkfs.size=2"][..],
            "twice",
        ),
        (
            &["X-containerd.mkfs.size=1", "X-containerd.mkfs.label=x"][..],
            "unknown",
        ),
        (&["X-containerd.mkfs.size=1", "ro"][..], "read-only"),
    ] {
        let e = run("mkfs/ext4", options).expect_err(what);
        assert_eq!(e.index(), Some(0), "{what}: {e}");
    }
    assert!(run("ext4", &["rw", "loop"]).is_ok());
    let e = run("ext4", &["X-containerd.mkfs.size=1"]).unwrap_err();
    assert!(
        matches!(e, MountListError::MisplacedOption { index: 0, .. }),
        "{e}"
    );
    let e = run("xfs", &["rw"]).unwrap_err();
    assert!(
        matches!(e, MountListError::UnknownType { index: 0, .. }),
        "{e}"
    );
}

#[test]
fn mkfs_sizes() {
    use super::options::mkfs_size;
    assert_eq!(mkfs_size("21474836480"), Some(21_474_836_480));
    assert_eq!(mkfs_size("20GiB"), Some(20 << 30));
    assert_eq!(mkfs_size("64 mb"), Some(64 << 20));
    assert_eq!(mkfs_size("1k"), Some(1024));
    assert_eq!(mkfs_size("1p"), Some(1 << 50));
    for bad in ["", "g", "1x", "1gg", "-1", "1.5g", "16777216p"] {
        assert_eq!(mkfs_size(bad), None, "{bad}");
    }
}

#[test]
fn targets_are_refused() {
    let mut e = erofs(1);
    e.target = Some("/sub".into());
    assert!(matches!(
        err(&[e.clone()]),
        MountListError::Target { index: 0, .. }
    ));
    e.target = Some(String::new());
    assert!(parse(&[e]).is_ok());
}

#[test]
fn json_reader() {
    assert!(matches!(
        parse_json(b"{}"),
        Err(MountListError::Json { .. })
    ));
    assert_eq!(parse_json(b"[]").unwrap(), vec![]);
    assert_eq!(parse(&[]), Err(MountListError::Empty));
    let e = parse_json(br#"[{"type":"erofs","source":"/a"},{"type":"erofs","source":"/b","x":1}]"#)
        .unwrap_err();
    assert!(matches!(e, MountListError::Entry { index: 1, .. }), "{e}");
    let null =
        parse_json(br#"[{"type":"erofs","source":"/a","options":null,"target":null}]"#).unwrap();
    assert_eq!(null, vec![m("erofs", "/a", &[])]);
    let big = vec![b' '; MAX_JSON_BYTES + 1];
    assert!(matches!(
        parse_json(&big),
        Err(MountListError::TooLarge { .. })
    ));
    let many = format!("[{}{{}}]", "{},".repeat(MAX_ENTRIES));
    assert!(matches!(
        parse_json(many.as_bytes()),
        Err(MountListError::TooManyEntries { count: 4097, .. })
    ));
    // Serialising skips an absent target and keeps the field names.
    let back = serde_json::to_string(&erofs(1)).unwrap();
    assert!(back.starts_with(r#"{"type":"erofs","source":""#), "{back}");
    assert!(!back.contains("target"), "{back}");
}

#[test]
fn host_paths() {
    use super::options::host_path;
    assert_eq!(host_path(0, "/a/b").unwrap(), Path::new("/a/b"));
    assert!(host_path(0, "/a/./b..c/...").is_ok());
    for bad in ["", "a/b", "/a/../b", "/a/..", "/a\0b", "/a/{{ mount 0 }}"] {
        assert!(host_path(0, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn fuzz_seeds_are_accepted() {
    for (name, input) in fuzz_harness::seeds() {
        let outcome = fuzz_harness::run(&input).unwrap();
        assert!(
            outcome.accepted && outcome.layers > 0,
            "{name}: {outcome:?}"
        );
    }
}
