//! Warns loudly when openh264 will be built without its SIMD assembly.
//!
//! openh264-sys2 compiles openh264's x86 assembly with `nasm` (found through `$NASM` or
//! `PATH`, via nasm-rs) and, when that fails, silently builds the C++ fallbacks only: H.264
//! decoding then runs about 1.3x and encoding 2.8x slower (`benches/video.rs`, 720p → 360p)
//! and nothing says why. This script
//! runs the same probe and turns a failure into a `cargo:warning`.
//!
//! openh264-sys2's own build script does not rerun when nasm appears later: after
//! installing it, `cargo clean -p openh264-sys2`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NASM");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=OPENH264_NO_ASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !matches!(arch.as_str(), "x86" | "x86_64") {
        return; // openh264-sys2 uses no nasm there (ARM assembly goes through the C compiler).
    }
    if std::env::var_os("OPENH264_NO_ASM").is_some() {
        println!(
            "cargo:warning=OPENH264_NO_ASM is set: openh264 is built without SIMD; H.264 \
             decoding will be ~1.3x and encoding ~2.8x slower"
        );
        return;
    }
    let nasm = std::env::var_os("NASM").unwrap_or_else(|| "nasm".into());
    let works = Command::new(&nasm)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        println!(
            "cargo:warning=`{}` not found or not working: openh264 is built WITHOUT its SIMD \
             assembly (openh264-sys2 does not say so): H.264 decoding will be ~1.3x and \
             encoding ~2.8x slower. Install nasm (apt-get install nasm), then \
             `cargo clean -p openh264-sys2` and rebuild.",
            nasm.to_string_lossy()
        );
    }
}
