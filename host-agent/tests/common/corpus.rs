//! Generated layer tars covering every rule of the writer.

use tar::EntryType;

use super::tars::Tar;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Regular files of every size class, all special types, owners, modes, times, xattrs.
pub fn basic() -> Vec<u8> {
    basic_with(true)
}

/// `basic`, optionally without what mkfs.erofs 1.8.6 cannot read or reads wrongly: a
/// `LIBARCHIVE.xattr.*` record (it fails with "Structure needs cleaning") and a PAX mtime
/// fraction shorter than 9 digits (it reads `.5` as 5 ns; GNU tar and layerpass as 0.5 s).
pub fn basic_with(beyond_mkfs: bool) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("./", 0o755);
    t.dir("./files/", 0o755);
    for (i, size) in [
        0usize,
        1,
        100,
        4031,
        4032,
        4033,
        4095,
        4096,
        4097,
        8192,
        10244,
        3 * 4096 + 5,
    ]
    .into_iter()
    .enumerate()
    {
        t.file(&format!("./files/f{size}"), 0o644, &pattern(size, i as u8));
    }
    t.entry(
        EntryType::Regular,
        "files/suid",
        0o4755,
        0,
        0,
        b"#!/bin/sh\n",
    );
    t.entry(EntryType::Regular, "files/sgid", 0o2711, 0, 0, b"x");
    t.entry(EntryType::Directory, "sticky", 0o1777, 0, 0, b"");
    t.entry(
        EntryType::Regular,
        "files/bigids",
        0o600,
        100_000,
        200_000,
        b"ids",
    );
    t.entry(
        EntryType::Regular,
        "files/smallids",
        0o640,
        1000,
        1001,
        b"ids",
    );
    t.symlink("links/short", "../files/f1");
    t.symlink("links/long", &"d/".repeat(150));
    t.symlink("links/verylong", &format!("/{}", "x".repeat(3999)));
    t.file("hl/a", 0o644, &pattern(5000, 7));
    t.hardlink("hl/b", "hl/a");
    t.hardlink("hl/c", "./hl/a");
    t.device(EntryType::Char, "dev/null", 1, 3);
    t.device(EntryType::Char, "dev/bigminor", 4095, 0xfffff);
    t.device(EntryType::Block, "dev/sda", 8, 0);
    t.entry(EntryType::Fifo, "dev/fifo", 0o600, 0, 0, b"");
    // times: build time (compact inode), fractional PAX, old
    t.mtime = 0;
    t.file("times/at-build-time", 0o644, b"compact");
    t.mtime = 1;
    t.file("times/one", 0o644, b"old");
    t.mtime = 1_700_000_000;
    t.pax(&[("mtime", b"1700000000.123456789")])
        .file("times/frac", 0o644, b"frac");
    // xattrs: user, trusted, security.capability, LIBARCHIVE form, a shared one
    t.pax(&[
        ("SCHILY.xattr.user.foo", b"bar"),
        ("SCHILY.xattr.trusted.bar", b"baz"),
        (
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
    ])
    .file("xattrs/caps", 0o755, b"ping");
    if beyond_mkfs {
        t.pax(&[("mtime", b"1700000000.5")])
            .file("times/short-fraction", 0o644, b"half");
        t.pax(&[("LIBARCHIVE.xattr.user.lib%3Darchive", b"dmFsdWU=")])
            .file("xattrs/libarchive", 0o644, b"l");
    }
    // (no newline bytes in PAX values: the tar crate splits PAX records at newlines)
    let big: Vec<u8> = pattern(3000, 1)
        .into_iter()
        .map(|b| if b == b'\n' { b'N' } else { b })
        .collect();
    t.pax(&[("SCHILY.xattr.user.big", &big)])
        .file("xattrs/bigvalue", 0o644, &pattern(2000, 3));
    for i in 0..5 {
        t.pax(&[("SCHILY.xattr.user.shared", b"same value for everyone")])
            .file(&format!("xattrs/shared{i}"), 0o644, b"s");
    }
    // an inline xattr area larger than a block (it may cross blocks; the inode may not)
    t.pax(&[
        ("SCHILY.xattr.user.huge1", &vec![b'1'; 3000]),
        ("SCHILY.xattr.user.huge2", &vec![b'2'; 3000]),
    ])
    .file("xattrs/huge", 0o644, b"h");
    // a symlink whose target cannot be inline next to its big xattr: a plain data block
    let big_x = vec![b'x'; 3000];
    // (trusted.*: Linux does not let user.* xattrs be read on symlinks)
    t.pax(&[("SCHILY.xattr.trusted.big", &big_x)]);
    t.symlink("links/plain", &format!("/{}", "t".repeat(1500)));
    t.pax(&[("SCHILY.xattr.trusted.dir", b"d")])
        .dir("xattrs/dir", 0o750);
    t.finish()
}

/// OCI whiteouts and opaque directories.
pub fn whiteouts() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("etc", 0o755);
    t.file("etc/.wh.passwd", 0o644, b"");
    t.file(".wh.removed-dir", 0o600, b"");
    t.dir("opaque", 0o700);
    t.file("opaque/.wh..wh..opq", 0o644, b"");
    t.file("opaque/new", 0o644, b"new");
    t.file("implicit/deep/.wh.x", 0o644, b"");
    t.file("implicit-opq/.wh..wh..opq", 0o644, b"");
    t.file("replaced", 0o644, b"first");
    t.file(".wh.replaced", 0o644, b"");
    // a layer already in overlay form passes through
    t.device(EntryType::Char, "pre/whiteout", 0, 0);
    t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
        .dir("pre/opaque", 0o755);
    t.finish()
}

/// Path normalisation, implicit directories, replacement, long names.
pub fn normalisation() -> Vec<u8> {
    normalisation_with(true)
}

/// `normalisation`, optionally without the V7 directory (typeflag NUL, name ending in `/`):
/// Go's archive/tar and layerpass read it as a directory with the entry's mode;
/// mkfs.erofs 1.8.6 reads a regular file, then replaces it by an implicit directory.
pub fn normalisation_with(v7_dir: bool) -> Vec<u8> {
    let mut t = Tar::new();
    t.entry(EntryType::Directory, "./", 0o700, 5, 6, b"");
    t.file("./a//b/./c", 0o644, b"c");
    t.file("/abs/file", 0o644, b"abs");
    t.file("x/y/z/deep", 0o644, b"deep");
    t.entry(EntryType::Directory, "x/", 0o711, 7, 8, b""); // explicit after implicit
    t.file("same", 0o644, b"old content that will be zeroed");
    t.file("same", 0o600, b"new");
    t.dir("dir-then-file", 0o755);
    t.file("dir-then-file/child", 0o644, b"gone");
    t.file("dir-then-file", 0o644, b"now a file");
    t.file("file-then-dir", 0o644, b"gone");
    t.dir("file-then-dir", 0o755);
    t.file("file-then-dir/child", 0o644, b"kept");
    t.file("link-src", 0o644, b"shared inode");
    t.hardlink("link-dst", "link-src");
    t.file("link-src", 0o644, b"replaced; link-dst keeps the old inode");
    t.file("a/../up", 0o644, b"up");
    let long_dir = format!("{}/{}", "d".repeat(120), "e".repeat(130));
    t.file(&format!("{long_dir}/long-gnu-name"), 0o644, b"gnu");
    t.symlink("long-link", &format!("{long_dir}/long-gnu-name"));
    t.hardlink("long-hardlink", &format!("{long_dir}/long-gnu-name"));
    t.pax(&[("path", format!("{}/pax-path", "p".repeat(200)).as_bytes())])
        .file("ignored-name", 0o644, b"pax");
    t.file(&"n".repeat(255), 0o644, b"255");
    if v7_dir {
        t.raw_name(0, b"olddir/", b""); // V7: NUL typeflag + slash = directory
        t.file("olddir/inside", 0o644, b"v7 dir");
    }
    t.finish()
}

/// A directory spanning several blocks, and names that sort around `.` and `..`.
pub fn big_dir() -> Vec<u8> {
    let mut t = Tar::new();
    for name in [
        "!a", "-x", "..x", ".hidden", "A", "a", "a.b", "ab", "b", "é", "z",
    ] {
        t.file(&format!("sorting/{name}"), 0o644, name.as_bytes());
    }
    for i in 0..3000 {
        t.file(
            &format!("many/file-with-a-longish-name-{i:05}"),
            0o644,
            format!("{i}").as_bytes(),
        );
    }
    for i in 0..40 {
        t.file(&format!("maxnames/{}{i:03}", "m".repeat(252)), 0o644, b"");
    }
    t.finish()
}

/// Binary xattr values holding newline and NUL bytes (a capability and an ACL-like blob):
/// PAX records are length-delimited, so these must survive.
pub fn binary_xattr() -> Vec<u8> {
    let mut t = Tar::new();
    t.pax(&[
        ("SCHILY.xattr.security.capability", BINARY_CAP),
        ("SCHILY.xattr.user.blob", BINARY_BLOB),
    ])
    .file("bin/tool", 0o755, b"tool");
    t.finish()
}

pub const BINARY_CAP: &[u8] =
    b"\x01\x00\x00\x02\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
pub const BINARY_BLOB: &[u8] = b"line one\nline two\n\0\x0a=\n";

/// The generated tars mkfs.erofs 1.8.6 can read, by name.
pub fn all_for_mkfs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("basic", basic_with(false)),
        ("whiteouts", whiteouts()),
        ("normalisation", normalisation_with(false)),
        ("big_dir", big_dir()),
        ("binary_xattr", binary_xattr()),
    ]
}

/// All generated tars, by name.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("basic", basic()),
        ("whiteouts", whiteouts()),
        ("normalisation", normalisation()),
        ("big_dir", big_dir()),
    ]
}
