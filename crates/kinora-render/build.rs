//! Notes whether `nasm` is available. Without it the bundled H.264 encoder silently falls
//! back to plain C: the bytes stay identical, but one encoder runs about 2.7× slower. The
//! engine reports the flag so a slow build is visible instead of a mystery.

use std::env;
use std::path::Path;

fn nasm_on_path() -> bool {
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| {
        let candidate = dir.join("nasm");
        is_executable(&candidate) || is_executable(&dir.join("nasm.exe"))
    })
}

fn is_executable(path: &Path) -> bool {
    path.is_file()
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kinora_no_nasm)");
    println!("cargo::rerun-if-env-changed=PATH");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Only x86 has assembly that needs nasm; other targets use their own assembler or none.
    let wants_nasm = arch == "x86_64" || arch == "x86";
    if wants_nasm && !nasm_on_path() {
        println!(
            "cargo::warning=nasm not found: the H.264 encoder is built without assembly and runs about 2.7x slower (install nasm)"
        );
        println!("cargo::rustc-cfg=kinora_no_nasm");
    }
}
