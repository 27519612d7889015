//! Compiles c/shm_peer.c into a standalone program for the target, with the C
//! compiler of the target (gcc on Linux, x86_64-w64-mingw32-gcc for Windows).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=c/shm_peer.c");
    let target = std::env::var("TARGET").unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let (cc, exe, libs): (String, _, &[&str]) = if target.contains("windows-gnu") {
        (
            "x86_64-w64-mingw32-gcc".into(),
            out.join("shm_peer.exe"),
            &[],
        )
    } else if target.contains("linux") {
        (
            std::env::var("CC").unwrap_or_else(|_| "cc".into()),
            out.join("shm_peer"),
            &["-lrt"],
        )
    } else {
        // Only type-checked on other platforms; nothing runs there.
        println!("cargo:rustc-env=SHM_PEER_EXE=");
        return;
    };
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg("c/shm_peer.c")
        .args(libs)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(status.success(), "{cc} failed to build c/shm_peer.c");
    println!("cargo:rustc-env=SHM_PEER_EXE={}", exe.display());
}
