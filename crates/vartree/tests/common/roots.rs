//! Running vartree on scratch roots and comparing what it leaves: the
//! helpers of the crash and kill tests.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output};

/// `vartree --root ROOT ARGS…`, with nothing inherited that would change
/// where it writes or where it stops.
pub fn command(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vartree"));
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .env_remove("PORTAGE_CONFIGROOT")
        .env_remove("VARTREE_CRASH_AT")
        .env_remove("VARTREE_SIGNAL_AT")
        .env_remove("VARTREE_CRASH_COUNT");
    c
}

/// Run [`command`] with `env` set.
pub fn vartree(root: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = command(root, args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Panic with the output unless the command succeeded.
pub fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: vartree failed ({:?}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `cp -a --reflink=auto FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// A scratch directory on tmpfs when there is one (the runs are many).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

/// `vartree --json check`, as the JSON text.
pub fn check_json(root: &Path) -> String {
    let o = vartree(root, &["--json", "check"], &[]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What matters in a root, by path relative to it: the type, mode and
/// owner of everything; the content (as a digest), link count, mtime and
/// extended attributes of files; symlink targets. Left out: directory
/// mtimes, the counter file and the VDB lock file (their values are not
/// given back by a rollback, as with Portage), the mtimes of the files in
/// the VDB and in `var/lib/portage`, and the `metadata` stamp of each VDB
/// entry.
pub type RootState = BTreeMap<String, String>;

pub fn root_state(root: &Path) -> RootState {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut RootState) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        if rel == "var/cache/edb/counter" || rel == "var/db/.pkg.portage_lockfile" {
            continue;
        }
        let in_vdb = rel.starts_with("var/db/pkg/");
        let in_state = in_vdb || rel.starts_with("var/lib/portage/");
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let head = format!("{:o} {}:{}", m.mode(), m.uid(), m.gid());
        let desc = if ft.is_symlink() {
            format!("sym {head} -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            walk(base, &p, out);
            format!("dir {head}{}", xattrs(&p))
        } else if ft.is_fifo() {
            format!("fifo {head}")
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {head} {:x}", m.rdev())
        } else if in_vdb && p.file_name().is_some_and(|n| n == "metadata") {
            format!("file {head} (metadata)")
        } else {
            let data = fs::read(&p).unwrap();
            let content = if data.len() <= 200 && !data.contains(&0) {
                String::from_utf8_lossy(&data).into_owned()
            } else {
                format!("{} bytes, sha512 {}", data.len(), super::sha512_hex(&data))
            };
            let mtime = if in_state {
                String::new()
            } else {
                format!(" mtime {}.{:09}", m.mtime(), m.mtime_nsec())
            };
            format!("file {head} n{}{mtime}{} {content}", m.nlink(), xattrs(&p))
        };
        out.insert(rel, desc);
    }
}

/// ` xattr NAME=VALUE…` for every extended attribute of `p` (not followed).
fn xattrs(p: &Path) -> String {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated, `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return String::new();
    }
    let mut out = String::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        // SAFETY: both strings are NUL-terminated, `val` is writable.
        let v =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        let v = if v < 0 { &[][..] } else { &val[..v as usize] };
        out.push_str(&format!(
            " xattr {}={}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(v)
        ));
    }
    out
}

/// The directories every transaction needs before it can start (for its
/// lock, its journal and its counter), as any Portage command creates them.
pub const STATE_DIRS: [&str; 7] = [
    "var",
    "var/db",
    "var/db/pkg",
    "var/cache",
    "var/cache/edb",
    "var/lib",
    "var/lib/portage",
];

/// `state` without the [`STATE_DIRS`] that hold nothing else: a root that
/// had none keeps them once a transaction has started, rolled back or not.
pub fn without_empty_state_dirs(mut state: RootState) -> RootState {
    for d in STATE_DIRS.iter().rev() {
        let prefix = format!("{d}/");
        if state.get(*d).is_some_and(|v| v.starts_with("dir "))
            && !state.keys().any(|k| k.starts_with(&prefix))
        {
            state.remove(*d);
        }
    }
    state
}

/// The paths whose description differs, at most 20 (`-`: absent).
pub fn state_diff(a: &RootState, b: &RootState) -> Vec<String> {
    let mut d: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v:.80} | {:.80}", b.get(k).map_or("-", |s| s)))
        .chain(
            b.iter()
                .filter(|(k, _)| !a.contains_key(*k))
                .map(|(k, v)| format!("{k}: - | {v:.80}")),
        )
        .collect();
    d.truncate(20);
    d
}

/// Panic if anything under `dir` is a temp name of vartree's
/// (`.vartree.*`, `.vartree-tmp.*`, `.vartree-removed.*`), its journal or
/// staging directory (`var/db/.vartree`), or a `-MERGING-` entry.
pub fn assert_no_leftovers(dir: &Path, what: &str) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".vartree") && !name.contains("-MERGING-"),
            "{what}: left behind: {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            assert_no_leftovers(&e.path(), what);
        }
    }
}

/// The COUNTER of every installed entry.
pub fn counters(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(cats) = fs::read_dir(root.join("var/db/pkg")) else {
        return out;
    };
    for cat in cats {
        let cat = cat.unwrap().path();
        if !cat.is_dir() {
            continue;
        }
        for p in fs::read_dir(&cat).unwrap() {
            let p = p.unwrap().path();
            if p.is_dir() {
                out.push(fs::read_to_string(p.join("COUNTER")).unwrap());
            }
        }
    }
    out
}

/// The crash-point count a `VARTREE_CRASH_COUNT` file holds.
pub fn read_count(file: &Path) -> u64 {
    fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}
