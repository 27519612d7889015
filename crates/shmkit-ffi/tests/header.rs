//! `include/shmkit.h` is what cbindgen makes of this crate now. Run with
//! `SHMKIT_BLESS=1` to rewrite it after changing the ABI.

// Generation reads the sources on the build machine; under Wine (the Windows
// run) it would be the same header, read through a drive mapping.
#![cfg(not(windows))]

#[test]
fn the_checked_in_header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    let path = format!("{dir}/include/shmkit.h");
    if std::env::var_os("SHMKIT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/shmkit.h");
        return;
    }
    let current = std::fs::read(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/shmkit.h is stale: regenerate it with \
         `SHMKIT_BLESS=1 cargo test -p shmkit-ffi --test header` and commit it"
    );
}
