//! The filesystem floor for merge benchmarks: walk an image and move every
//! entry into ROOT with the fewest syscalls possible (mkdir for directories,
//! rename for everything else). No hashing, no database, no safety.
//!
//! `floor_rename IMAGE ROOT`
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;

fn walk(src: &Path, dst: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for ent in fs::read_dir(src)? {
        let ent = ent?;
        let to = dst.join(ent.file_name());
        if ent.file_type()?.is_dir() {
            match fs::create_dir(&to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            n += walk(&ent.path(), &to)?;
        } else {
            fs::rename(ent.path(), &to)?;
            n += 1;
        }
    }
    Ok(n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: floor_rename IMAGE ROOT");
        std::process::exit(2);
    }
    if let Err(e) = walk(Path::new(&args[1]), Path::new(&args[2])) {
        eprintln!("floor_rename: {e}");
        std::process::exit(1);
    }
}
