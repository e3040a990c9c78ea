//! The filesystem floor of `vartree list --json` on a VDB: list the
//! categories and packages, then, on two threads, `stat` each package
//! directory and read its `metadata` file. No parsing, no output.
//!
//! `cargo run --release -p vartree-vdb --example floor_list ROOT`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::path::PathBuf;

fn main() {
    let Some(root) = std::env::args().nth(1) else {
        eprintln!("usage: floor_list ROOT");
        std::process::exit(2);
    };
    let pkg = PathBuf::from(root).join("var/db/pkg");
    let mut dirs = Vec::new();
    for c in std::fs::read_dir(&pkg).into_iter().flatten().flatten() {
        for p in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            dirs.push(p.path());
        }
    }
    let (a, b) = dirs.split_at(dirs.len() / 2);
    let work = |d: &[PathBuf]| {
        let mut total = 0;
        let mut buf = Vec::with_capacity(8192);
        for p in d {
            let _ = std::fs::metadata(p);
            buf.clear();
            if let Ok(mut f) = std::fs::File::open(p.join("metadata")) {
                total += f.read_to_end(&mut buf).unwrap_or(0);
            }
        }
        total
    };
    let bytes = std::thread::scope(|s| {
        let h = s.spawn(|| work(a));
        work(b) + h.join().unwrap_or(0)
    });
    println!("{} packages, {bytes} bytes", dirs.len());
}
