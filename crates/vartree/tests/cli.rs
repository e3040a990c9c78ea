//! The `vartree` binary on the bundled sample root (merged by Portage 3.0.83).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn sample_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let tar = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sample-root.tar");
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success(), "extracting {}", tar.display());
    t
}

fn vartree(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("ROOT")
        .env_remove("EPREFIX")
        .output()
        .unwrap()
}

fn json(root: &Path, args: &[&str]) -> (Value, i32) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = vartree(root, &a);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: bad JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap())
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn list() {
    let t = sample_root();
    let (v, rc) = json(t.path(), &["list"]);
    assert_eq!(rc, 0);
    let cpvs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cpv"].as_str().unwrap())
        .collect();
    assert_eq!(cpvs, ["app-misc/foo-1.1", "dev-util/bar-2.0"]);
    assert_eq!(v[0]["slot"], "0");
    assert_eq!(v[0]["repository"], "gentoo");
    assert_eq!(v[0]["pn"], "foo");
    assert_eq!(v[0]["pvr"], "1.1");
    assert!(v[0]["counter"].is_i64());

    let o = vartree(t.path(), &["list", "--slot", "--repo"]);
    assert_eq!(
        stdout(&o),
        "app-misc/foo-1.1:0::gentoo\ndev-util/bar-2.0:0::gentoo\n"
    );
    let o = vartree(t.path(), &["list", "bar"]);
    assert_eq!(stdout(&o), "dev-util/bar-2.0\n");
    let o = vartree(t.path(), &["list", ">=app-misc/foo-1.1:0"]);
    assert_eq!(stdout(&o), "app-misc/foo-1.1\n");
    let o = vartree(t.path(), &["list", "<app-misc/foo-1.1"]);
    assert_eq!(o.status.code(), Some(1));
    let o = vartree(t.path(), &["list", "=app-misc/foo-1.1-r"]);
    assert_eq!(o.status.code(), Some(2), "an invalid atom is an error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("app-misc/foo-1.1-r"));
}

#[test]
fn contents() {
    let t = sample_root();
    let (v, rc) = json(t.path(), &["contents", "dev-util/bar"]);
    assert_eq!(rc, 0);
    let e = &v[0]["entries"];
    assert_eq!(v[0]["cpv"], "dev-util/bar-2.0");
    assert_eq!(e.as_array().unwrap().len(), 8);
    assert_eq!(e[2]["type"], "obj");
    assert_eq!(e[2]["path"], "/usr/bin/bar");
    assert_eq!(e[2]["md5"], "b4e64cf7f6cc6d6a95e2272040104583");
    assert_eq!(e[2]["mtime"], 1700000100);
    assert_eq!(e[7]["type"], "sym");
    assert_eq!(e[7]["target"], "bar");

    let o = vartree(t.path(), &["contents", "--type", "sym", "dev-util/bar"]);
    assert_eq!(stdout(&o), "/usr/bin/bar-compat\n");
    let o = vartree(t.path(), &["contents", "--long", "--type", "sym", "bar"]);
    assert_eq!(stdout(&o), "sym /usr/bin/bar-compat -> bar 1700000100\n");
    let o = vartree(t.path(), &["contents", "--type", "nope", "bar"]);
    assert_eq!(o.status.code(), Some(2));
    let o = vartree(t.path(), &["contents", "app-misc/none"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn owners() {
    let t = sample_root();
    let (v, rc) = json(
        t.path(),
        &[
            "owners",
            "/lib/foo/data-rel",
            "/usr/bin/bar",
            "/usr/bin",
            "/nope",
        ],
    );
    assert_eq!(rc, 1, "one path has no owner");
    assert_eq!(v[0]["owners"][0]["cpv"], "app-misc/foo-1.1");
    assert_eq!(v[0]["owners"][0]["entry"], "/usr/lib/foo/data-rel");
    assert_eq!(v[1]["owners"][0]["cpv"], "dev-util/bar-2.0");
    assert_eq!(v[2]["owners"].as_array().unwrap().len(), 2);
    assert_eq!(v[3]["owners"].as_array().unwrap().len(), 0);

    let o = vartree(t.path(), &["owners", "/usr/bin/bar", "/lib/foo/data-rel"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "dev-util/bar-2.0: /usr/bin/bar\napp-misc/foo-1.1: /lib/foo/data-rel (as /usr/lib/foo/data-rel)\n"
    );

    // Paths from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vartree"))
        .arg("--root")
        .arg(t.path())
        .args(["owners", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/usr/bin/foo\n/etc/foo/foo.conf\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "app-misc/foo-1.1: /usr/bin/foo\napp-misc/foo-1.1: /etc/foo/foo.conf\n"
    );
}

#[test]
fn check_and_size() {
    let t = sample_root();
    let o = vartree(t.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 packages checked, 0 with problems"));

    let root: PathBuf = t.path().into();
    std::fs::write(root.join("etc/foo/foo.conf"), "changed\n").unwrap();
    std::fs::remove_file(root.join("usr/share/doc/bar-2.0/README")).unwrap();
    std::fs::remove_file(root.join("usr/bin/foo-abs")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", root.join("usr/bin/foo-abs")).unwrap();
    let (v, rc) = json(t.path(), &["check"]);
    assert_eq!(rc, 1);
    let foo = &v["packages"][0];
    assert_eq!(foo["md5"][0], "/etc/foo/foo.conf");
    assert_eq!(foo["mtime"][0], "/etc/foo/foo.conf");
    assert_eq!(foo["symlink"][0], "/usr/bin/foo-abs");
    assert_eq!(
        v["packages"][1]["missing"][0],
        "/usr/share/doc/bar-2.0/README"
    );
    assert_eq!(v["totals"]["packages_with_problems"], 2);

    let (v, rc) = json(t.path(), &["size", "dev-util/bar"]);
    assert_eq!(rc, 0);
    assert_eq!(v[0]["files"], 2);
    assert_eq!(v[0]["missing"], 1);
    assert_eq!(v[0]["bytes"], 19);
}

#[test]
fn warnings_do_not_stop_queries() {
    let t = sample_root();
    let pkg = t.path().join("var/db/pkg/dev-util/bar-2.0");
    std::fs::write(
        pkg.join("CONTENTS"),
        b"dir /usr\nobj /usr/bin/bar b4e64cf7f6cc6d6a95e2272040104583 17000\x00\n",
    )
    .unwrap();
    std::fs::create_dir_all(t.path().join("var/db/pkg/dev-util/not-a-valid-pf-")).unwrap();
    let o = vartree(t.path(), &["list"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "app-misc/foo-1.1\ndev-util/bar-2.0\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not-a-valid-pf-"), "{err}");
    let o = vartree(t.path(), &["contents", "bar"]);
    assert_eq!(stdout(&o), "/usr\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bar-2.0/CONTENTS: line 2"), "{err}");
    let o = vartree(t.path(), &["--quiet", "list"]);
    assert!(o.stderr.is_empty());
}
