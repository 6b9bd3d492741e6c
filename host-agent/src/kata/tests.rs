//! The store on real files (the tests run as root: `mknod` and `mount` work).

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode};

use super::*;

fn raw_node(path: &Path, file_type: FileType, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        path,
        file_type,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

fn store() -> (tempfile::TempDir, KataStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KataStore::open(&dir.path().join("vhost-user")).unwrap();
    (dir, store)
}

/// A read-only tmpfs, unmounted on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    /// A tmpfs at `path` holding `block/sockets` and `block/devices`, then made read-only.
    fn with_store_dirs(path: &Path) -> Self {
        std::fs::create_dir_all(path).unwrap();
        rustix::mount::mount(
            "tmpfs",
            path,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .unwrap();
        let guard = Self(path.to_owned());
        std::fs::create_dir_all(path.join(SOCKETS_DIR)).unwrap();
        std::fs::create_dir_all(path.join(DEVICES_DIR)).unwrap();
        rustix::mount::mount_remount(path, rustix::mount::MountFlags::RDONLY, "").unwrap();
        guard
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn open_creates_the_directories_and_leaves_no_probe() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run/kata-containers/vhost-user");
    let store = KataStore::open(&root).unwrap();
    assert_eq!(store.root(), root);
    for sub in ["block/sockets", "block/devices"] {
        let path = root.join(sub);
        assert!(path.is_dir(), "{}", path.display());
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
    }
    assert_eq!(store.socket_path("d0"), root.join("block/sockets/d0"));
    assert_eq!(store.device_path("d0"), root.join("block/devices/d0"));
    // Opening again is fine.
    KataStore::open(&root).unwrap();
}

#[test]
fn a_root_that_is_a_file_is_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::write(&root, b"not a directory").unwrap();
    let err = KataStore::open(&root).unwrap_err();
    assert!(matches!(err, KataStoreError::NotWritable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "kata store directory {}/block/sockets is not writable",
            root.display()
        )
    );
}

#[test]
fn a_read_only_store_is_not_writable_even_for_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ro");
    let _mount = ReadOnlyMount::with_store_dirs(&root);
    let err = KataStore::open(&root).unwrap_err();
    let KataStoreError::NotWritable { path, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &root.join("block/sockets"));
    assert_eq!(source.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn a_node_with_its_socket_resolves_like_kata() {
    let (_dir, store) = store();
    let node = store.make_node("vhostblk0", 7).unwrap();
    assert_eq!(node, store.device_path("vhostblk0"));
    let meta = std::fs::metadata(&node).unwrap();
    assert!(meta.file_type().is_block_device());
    assert_eq!(rustix::fs::major(meta.rdev()), VHOST_USER_BLK_MAJOR);
    assert_eq!(rustix::fs::minor(meta.rdev()), 7);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let socket = store.socket_path("vhostblk0");
    let _listener = UnixListener::bind(&socket).unwrap();
    assert_eq!(store.resolve(VHOST_USER_BLK_MAJOR, 7).unwrap(), socket);

    // A second export resolves to its own socket.
    store.make_node("vhostblk1", 8).unwrap();
    let _l1 = UnixListener::bind(store.socket_path("vhostblk1")).unwrap();
    assert_eq!(
        store.resolve(VHOST_USER_BLK_MAJOR, 8).unwrap(),
        store.socket_path("vhostblk1")
    );
}

#[test]
fn a_node_without_a_socket_or_no_node_fails_like_kata() {
    let (_dir, store) = store();
    store.make_node("lonely", 3).unwrap();
    let err = store.resolve(VHOST_USER_BLK_MAJOR, 3).unwrap_err();
    let KataStoreError::NoSocket { node, socket, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(node, &store.device_path("lonely"));
    assert_eq!(socket, &store.socket_path("lonely"));

    let err = store.resolve(VHOST_USER_BLK_MAJOR, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "required device node (241:4) doesn't exist under directory {}",
            store.devices_dir().display()
        )
    );
}

#[test]
fn other_majors_are_ignored_and_the_first_name_wins() {
    let (_dir, store) = store();
    let devices = store.devices_dir();
    // Sorted before the real node: a SCSI-major node, a disk and a character device.
    raw_node(&devices.join("a-scsi"), FileType::BlockDevice, 242, 0);
    raw_node(&devices.join("b-sda"), FileType::BlockDevice, 8, 0);
    raw_node(&devices.join("c-char"), FileType::CharacterDevice, 241, 5);
    std::fs::write(devices.join("d-file"), b"").unwrap();
    store.make_node("e-real", 0).unwrap();
    let _l = UnixListener::bind(store.socket_path("e-real")).unwrap();
    assert_eq!(store.resolve(241, 0).unwrap(), store.socket_path("e-real"));
    // Kata matches st_rdev whatever the file type, so the character device counts.
    assert_eq!(store.minors_in_use().unwrap(), BTreeSet::from([0, 5]));
    let err = store.make_node("f", 5).unwrap_err();
    assert!(
        matches!(err, KataStoreError::MinorInUse { minor: 5, .. }),
        "{err:?}"
    );

    // Two nodes with the same number (made behind the store's back): Kata takes the
    // first by name.
    raw_node(&devices.join("0-dup"), FileType::BlockDevice, 241, 0);
    let _l = UnixListener::bind(store.socket_path("0-dup")).unwrap();
    assert_eq!(store.resolve(241, 0).unwrap(), store.socket_path("0-dup"));
}

#[test]
fn symlinks_are_followed_and_dangling_ones_fail_the_lookup_like_kata() {
    let (dir, store) = store();
    let elsewhere = dir.path().join("node");
    raw_node(&elsewhere, FileType::BlockDevice, 241, 9);
    std::os::unix::fs::symlink(&elsewhere, store.device_path("linked")).unwrap();
    let _l = UnixListener::bind(store.socket_path("linked")).unwrap();
    assert_eq!(store.resolve(241, 9).unwrap(), store.socket_path("linked"));
    assert_eq!(store.minors_in_use().unwrap(), BTreeSet::from([9]));

    std::os::unix::fs::symlink(dir.path().join("missing"), store.device_path("dangling")).unwrap();
    // Kata's scan stops at the first entry it cannot stat.
    let err = store.resolve(241, 9).unwrap_err();
    assert!(
        matches!(err, KataStoreError::Io { op: "stat", .. }),
        "{err:?}"
    );
    // Allocation skips it.
    assert_eq!(store.minors_in_use().unwrap(), BTreeSet::from([9]));
}

#[test]
fn existing_files_bad_names_and_bad_minors_are_refused() {
    let (_dir, store) = store();
    std::fs::write(store.device_path("taken"), b"").unwrap();
    let err = store.make_node("taken", 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} already exists", store.device_path("taken").display())
    );
    store.make_node("n", 2).unwrap();
    assert!(matches!(
        store.make_node("n", 3),
        Err(KataStoreError::Exists { .. })
    ));
    for bad in ["", "..", "a/b"] {
        assert!(matches!(
            store.make_node(bad, 4),
            Err(KataStoreError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        store.make_node("big", MAX_MINOR + 1),
        Err(KataStoreError::InvalidMinor { .. })
    ));
    store.make_node("max", MAX_MINOR).unwrap();
}

#[test]
fn allocation_follows_the_nodes_on_disk() {
    let (_dir, store) = store();
    assert_eq!(allocate_minor(&store.minors_in_use().unwrap()).unwrap(), 0);
    for (name, minor) in [("a", 0), ("b", 1), ("c", 3)] {
        store.make_node(name, minor).unwrap();
    }
    assert_eq!(allocate_minor(&store.minors_in_use().unwrap()).unwrap(), 2);
    store.remove("a").unwrap();
    assert_eq!(allocate_minor(&store.minors_in_use().unwrap()).unwrap(), 0);
}

#[test]
fn remove_is_idempotent() {
    let (_dir, store) = store();
    store.make_node("gone", 1).unwrap();
    let listener = UnixListener::bind(store.socket_path("gone")).unwrap();
    store.remove("gone").unwrap();
    assert!(!store.device_path("gone").exists());
    assert!(std::fs::symlink_metadata(store.socket_path("gone")).is_err());
    drop(listener);
    store.remove("gone").unwrap();
    store.remove("never-there").unwrap();
    assert!(matches!(
        store.remove(".."),
        Err(KataStoreError::InvalidName { .. })
    ));
}
