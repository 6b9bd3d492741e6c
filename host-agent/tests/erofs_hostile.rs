//! Hostile layers: tars crafted to exhaust the converter (memory, disk, arithmetic, the
//! one-byte shared xattr count). Each runs the `layerpass` binary as a child process, so
//! that its peak RSS is its own (the tests of this file run as threads of one process, so
//! an in-process measure would mix them; see [`spawn`] for why a small helper process
//! waits for it), and must give a clear error in bounded memory and leave nothing in the
//! output directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of tests panic like the tests

mod common;
mod image_support;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::tars::Tar;
use common::tools;
use layerpass::convert::{ImageConvertOptions, OutputLayout};
use layerpass::erofs::{
    ConvertOptions, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LAYER_BYTES, convert_layer,
};
use tar::{EntryType, Header};

/// Peak RSS allowed to the converter on any of these inputs.
const RSS_LIMIT_KIB: i64 = 256 * 1024;

/// What a converter run gave.
struct Run {
    success: bool,
    code: Option<i32>,
    stderr: String,
    peak_rss_kib: i64,
}

/// Set (to the converter's arguments, separated by [`ARG_SEP`]) in the copy of this test
/// binary that runs [`measure_child_helper`].
const MEASURE_ENV: &str = "LAYERPASS_HOSTILE_MEASURE_ARGS";
const ARG_SEP: char = '\u{1f}';
/// Where the helper writes `<wait status> <peak RSS KiB>`.
const REPORT_ENV: &str = "LAYERPASS_HOSTILE_MEASURE_REPORT";

/// Starts the converter with `args` under a measuring helper: this test binary run again
/// with only [`measure_child_helper`], which spawns the converter, waits for it with
/// `wait4` and reports its peak RSS. (A child's `ru_maxrss` starts from the memory of the
/// process that spawned it; the helper is small and fresh, where this test process holds
/// the other tests' data. Stdin and stderr go through to the converter.)
fn spawn(args: &[&OsStr]) -> Measured {
    let report = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let joined: Vec<String> = args
        .iter()
        .map(|a| a.to_str().unwrap().to_owned())
        .collect();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "measure_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEASURE_ENV, joined.join(&ARG_SEP.to_string()))
        .env(REPORT_ENV, &report)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Measured { child, report }
}

/// A converter started by [`spawn`].
struct Measured {
    /// The helper.
    child: Child,
    report: tempfile::TempPath,
}

/// Not a test of its own: the measuring helper of [`spawn`], doing nothing unless
/// [`MEASURE_ENV`] is set.
#[test]
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which gives its rusage"
)]
fn measure_child_helper() {
    let (Some(args), Some(report)) = (std::env::var_os(MEASURE_ENV), std::env::var_os(REPORT_ENV))
    else {
        return;
    };
    let args = args.into_string().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_layerpass"))
        .args(args.split(ARG_SEP))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unwaited child; `status` and `usage` are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    fs::write(report, format!("{status} {}", usage.ru_maxrss)).unwrap();
}

/// Waits for a [`spawn`]ed converter (its stdin closed or being fed) and collects its
/// status, stderr and peak RSS.
fn finish(m: Measured, what: &str) -> Run {
    let Measured { mut child, report } = m;
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr_pipe.read_to_string(&mut s).unwrap();
        s
    });
    let helper = child.wait().unwrap();
    // the helper's own test-harness lines, then the converter's
    let stderr = reader.join().unwrap();
    assert!(helper.success(), "the measuring helper failed: {stderr}");
    let report = fs::read_to_string(&report).unwrap();
    let mut fields = report.split_whitespace().map(|f| f.parse::<i64>().unwrap());
    let status = i32::try_from(fields.next().unwrap()).unwrap();
    let exited = libc::WIFEXITED(status);
    let run = Run {
        success: exited && libc::WEXITSTATUS(status) == 0,
        code: exited.then(|| libc::WEXITSTATUS(status)),
        stderr,
        peak_rss_kib: fields.next().unwrap(),
    };
    eprintln!(
        "{what}: exit {:?}, peak RSS {} MiB, stderr: {}",
        run.code,
        run.peak_rss_kib >> 10,
        run.stderr.trim()
    );
    run
}

/// Runs `layerpass convert layer - OUT extra...` with `input` on stdin.
fn convert_stdin(input: &[u8], out: &Path, extra: &[&str], what: &str) -> Run {
    let mut args: Vec<&OsStr> = vec!["convert".as_ref(), "layer".as_ref(), "-".as_ref()];
    args.push(out.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    let mut child = spawn(&args);
    let mut stdin = child.child.stdin.take().unwrap();
    // the converter may stop reading early: a broken pipe is expected then
    let _ = stdin.write_all(input);
    drop(stdin);
    finish(child, what)
}

/// Every file under `dir`, recursively (directories alone do not count).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The run failed cleanly (exit status 1, not a panic or a signal), said every one of
/// `expect`, stayed under [`RSS_LIMIT_KIB`] and left no file in `dir`.
#[track_caller]
fn refused(run: &Run, dir: &Path, expect: &[&str]) {
    assert!(!run.success, "conversion must fail");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for e in expect {
        assert!(
            run.stderr.contains(e),
            "error {:?} should mention {e:?}",
            run.stderr
        );
    }
    assert!(
        run.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB is over {RSS_LIMIT_KIB} KiB",
        run.peak_rss_kib
    );
    let left = files_under(dir);
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// One PAX record `"<len> key=value\n"`.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A header of type `typeflag` named `name` with `data` as its content, padded.
fn member(typeflag: u8, name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::new(typeflag));
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// The end-of-archive marker.
fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

#[test]
fn chained_pax_headers_are_capped_in_size() {
    // 1000 PAX headers of 512 KiB each (one repeated record) before one file: 500 MiB
    // of extension data held in memory if nothing stops it, from a 1 MB .tar.gz (gzip
    // members concatenated, as MultiGzDecoder reads them).
    let dir = tempfile::tempdir().unwrap();
    let header = member(
        b'x',
        "PaxHeaders/f",
        &pax_record("comment", &vec![b'a'; 512 << 10]),
    );
    let one = image_support::gzip(&header);
    let mut gz = one.repeat(1000);
    let mut tail = member(b'0', "f", b"abc");
    tail.extend(end());
    gz.extend(image_support::gzip(&tail));
    assert!(gz.len() < 4 << 20, "{}", gz.len());
    let run = convert_stdin(&gz, &dir.path().join("out.erofs"), &[], "1000 PAX headers");
    refused(
        &run,
        dir.path(),
        &["extension headers", "more than the limit of 1048576"],
    );
}

#[test]
fn chained_extension_headers_are_capped_in_number() {
    // 10,000 small global headers, then a long name and a PAX header, before one file
    let dir = tempfile::tempdir().unwrap();
    let mut tar = member(b'g', "global", &pax_record("comment", b"x")).repeat(10_000);
    tar.extend(member(b'L', "././@LongLink", b"long-name\0"));
    tar.extend(member(b'x', "PaxHeaders/f", &pax_record("uid", b"7")));
    tar.extend(member(b'0', "f", b"abc"));
    tar.extend(end());
    let run = convert_stdin(
        &tar,
        &dir.path().join("out.erofs"),
        &[],
        "10k extension headers",
    );
    refused(
        &run,
        dir.path(),
        &["more than 64 extension headers", "before one entry"],
    );
}

#[test]
fn a_declared_size_is_not_reserved_before_its_content_comes() {
    // A 2 KiB tar declaring a 2 GiB file. The converter reads it from a pipe left open,
    // so its temporary image can be looked at while it waits for content that never
    // comes: the disk space reserved follows what was written (64 MiB ahead), not the
    // declared size.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.erofs");
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_path("big").unwrap();
    h.set_mode(0o644);
    h.set_size(2 << 30);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend(vec![7u8; 1536]);
    let mut args: Vec<&OsStr> = vec!["convert".as_ref(), "layer".as_ref(), "-".as_ref()];
    args.push(out.as_os_str());
    let mut child = spawn(&args);
    let mut stdin = child.child.stdin.take().unwrap();
    stdin.write_all(&tar).unwrap();
    stdin.flush().unwrap();
    // wait (polling, no time limit of its own) until the content is being written
    let reserved = loop {
        let tmp = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".erofs.tmp"));
        if let Some(blocks) = tmp.and_then(|p| fs::metadata(p).ok()).map(|m| m.blocks())
            && blocks > 0
        {
            break blocks * 512;
        }
        if let Some(status) = child.child.try_wait().unwrap() {
            panic!("the converter exited ({status}) before reserving anything");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    eprintln!(
        "2 GiB declared, 1536 bytes sent: {} MiB reserved",
        reserved >> 20
    );
    assert!(
        reserved <= 128 << 20,
        "{reserved} bytes reserved for 1536 bytes of content"
    );
    drop(stdin);
    let run = finish(child, "2 GiB declared in a 2 KiB tar");
    refused(&run, dir.path(), &["\"big\"", "truncated", "2147483648"]);
}

#[test]
fn sizes_above_i64_max_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // base-256 size field: 0x80 then eleven 0xff bytes (2^88 - 1, u64::MAX once the
    // high bits are dropped)
    let mut base256 = member(b'0', "huge", b"");
    base256[124] = 0x80;
    base256[125..136].fill(0xff);
    let mut h = Header::new_old();
    h.as_mut_bytes().copy_from_slice(&base256[..512]);
    h.set_cksum();
    base256[..512].copy_from_slice(h.as_bytes());
    base256.extend(vec![1u8; 4096]);
    base256.extend(end());
    // PAX size records
    let pax = |v: &str| {
        let mut t = member(b'x', "PaxHeaders/huge", &pax_record("size", v.as_bytes()));
        t.extend(member(b'0', "huge", b""));
        t.extend(vec![1u8; 4096]);
        t.extend(end());
        t
    };
    for (tar, what) in [
        (base256, "base-256 size 2^88 - 1"),
        (pax("18446744073709551615"), "PAX size u64::MAX"),
        (pax("18446744073709551104"), "PAX size u64::MAX - 511"),
        (pax("9223372036854775808"), "PAX size 2^63"),
    ] {
        let run = convert_stdin(&tar, &dir.path().join("out.erofs"), &[], what);
        refused(&run, dir.path(), &["larger than 2^63 - 1"]);
    }
}

#[test]
fn more_than_255_shared_xattrs_on_one_inode_give_a_valid_image() {
    // 300 xattrs on each of three files: every pair is used three times, so shared; one
    // inode can reference at most 255 (the count is one byte), the rest stay inline.
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("SCHILY.xattr.user.s{i:03}"),
                b"shared-value".to_vec(),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut t = Tar::new();
    for name in ["a", "b", "c"] {
        t.pax(&refs).file(name, 0o644, name.as_bytes());
    }
    let tar = t.finish();
    let out = dir.path().join("x.erofs");
    convert_layer(&tar[..], &out, &ConvertOptions::default()).unwrap();
    tools::fsck(&out);
    if tools::can_mount() {
        let m = common::mount::Mount::erofs(&out);
        for name in ["a", "b", "c"] {
            let p = m.path().join(name);
            let names = xattr_names(&p);
            assert_eq!(names.len(), 300, "{name}: {names:?}");
            assert_eq!(
                get_xattr(&p, "user.s299"),
                b"shared-value",
                "{name}: user.s299"
            );
            assert_eq!(get_xattr(&p, "user.s000"), b"shared-value");
        }
    }
}

fn xattr_names(p: &Path) -> Vec<String> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: `path` is NUL-terminated; `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn get_xattr(p: &Path, name: &str) -> Vec<u8> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: both strings are NUL-terminated; `buf` is valid for `buf.len()` bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n >= 0, "getxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf
}

/// 64 MiB of zeros, compressed once: a gzip member to repeat.
fn zeros_member() -> Vec<u8> {
    image_support::gzip(&vec![0u8; 64 << 20])
}

#[test]
fn a_gzip_bomb_stops_at_max_layer_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = zeros_member();
    // one file declaring 1 GiB of zeros (16 members), ~1 MB compressed
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_path("bomb").unwrap();
    h.set_mode(0o644);
    h.set_size(1 << 30);
    h.set_cksum();
    let mut in_a_file = image_support::gzip(h.as_bytes());
    in_a_file.extend(zeros.repeat(17));
    // zeros after the end of the archive: read for the diff ID, so limited as well
    let mut after_the_end = image_support::gzip(&member(b'0', "f", b"abc"));
    after_the_end.extend(zeros.repeat(16));
    for (gz, what) in [(in_a_file, "in a file"), (after_the_end, "after the end")] {
        assert!(gz.len() < 2 << 20, "{}", gz.len());
        let run = convert_stdin(
            &gz,
            &dir.path().join("out.erofs"),
            &["--max-layer-bytes", "67108864"],
            &format!("1 GiB gzip bomb {what}"),
        );
        refused(
            &run,
            dir.path(),
            &["exceeds the max-layer-bytes limit of 67108864 bytes"],
        );
    }
}

#[test]
fn max_entries_stops_a_layer_with_too_many() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    for i in 0..11 {
        t.file(&format!("f{i:02}"), 0o644, b"x");
    }
    let tar = t.finish();
    let out = dir.path().join("out.erofs");
    let run = convert_stdin(&tar, &out, &["--max-entries", "10"], "11 entries, limit 10");
    refused(
        &run,
        dir.path(),
        &["more entries than the max-entries limit of 10"],
    );
    // exactly at the limit is fine
    let run = convert_stdin(&tar, &out, &["--max-entries", "11"], "11 entries, limit 11");
    assert!(run.success, "{}", run.stderr);
}

#[test]
fn convert_image_applies_the_limits_to_each_layer() {
    use image_support::{LAYER_GZIP, LayerSpec, OciDir, layer_tar};
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let oci = OciDir::new(&layout);
    let big = vec![5u8; 1 << 20];
    let layers = vec![LayerSpec::new(
        LAYER_GZIP,
        &layer_tar(&[("a", b"a"), ("b", b"b"), ("c", &big)]),
    )];
    oci.write_index(vec![oci.image(&layers, Some("linux/amd64"))]);
    for (flags, expect) in [
        (
            ["--max-entries", "2"],
            "more entries than the max-entries limit of 2",
        ),
        (
            ["--max-layer-bytes", "65536"],
            "exceeds the max-layer-bytes limit of 65536 bytes",
        ),
    ] {
        let out = dir.path().join("cache");
        let mut args: Vec<&OsStr> = vec!["convert".as_ref(), "image".as_ref()];
        args.push(layout.as_os_str());
        args.push(out.as_os_str());
        args.extend(flags.iter().map(OsStr::new));
        let mut child = spawn(&args);
        drop(child.child.stdin.take());
        let run = finish(child, &format!("convert image {flags:?}"));
        refused(&run, &out, &["layer 0", expect]);
    }
}

#[test]
fn the_default_limits_are_documented() {
    assert_eq!(DEFAULT_MAX_LAYER_BYTES, 64 << 30);
    assert_eq!(DEFAULT_MAX_ENTRIES, 10_000_000);
    let d = ConvertOptions::default();
    assert_eq!(
        (d.max_layer_bytes, d.max_entries),
        (DEFAULT_MAX_LAYER_BYTES, DEFAULT_MAX_ENTRIES)
    );
    let i = ImageConvertOptions::new(OutputLayout::Flat, "/nowhere");
    assert_eq!(
        (i.max_layer_bytes, i.max_entries),
        (DEFAULT_MAX_LAYER_BYTES, DEFAULT_MAX_ENTRIES)
    );
    for sub in ["layer", "image"] {
        let help = tools::run(
            Command::new(env!("CARGO_BIN_EXE_layerpass")).args(["convert", sub, "--help"]),
        );
        let help = String::from_utf8_lossy(&help.stdout);
        for want in [
            "--max-layer-bytes",
            "default 64 GiB",
            "[default: 68719476736]",
            "--max-entries",
            "default 10 million",
            "[default: 10000000]",
        ] {
            assert!(
                help.contains(want),
                "convert {sub} --help lacks {want:?}:\n{help}"
            );
        }
    }
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/erofs.md")).unwrap();
    for want in ["--max-layer-bytes", "64 GiB", "--max-entries", "10 million"] {
        assert!(doc.contains(want), "docs/erofs.md lacks {want:?}");
    }
}
