//! Names the targets that start tasks through `src/vfork.rs` (cfg
//! `own_clone`): Linux where the kernel's `sigaction` layout it relies on
//! is known. Every other target uses `posix_spawn`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(own_clone)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && matches!(arch.as_str(), "x86_64" | "aarch64" | "riscv64") {
        println!("cargo::rustc-cfg=own_clone");
    }
}
