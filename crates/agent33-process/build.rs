//! Names the targets that start tasks through `src/vfork.rs` (cfg
//! `own_clone`): 64-bit Linux where the kernel's `sigaction` layout it
//! relies on is known; and among them those where it has `clone3` written
//! out (cfg `clone3`). Every other target uses `posix_spawn`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(own_clone)");
    println!("cargo::rustc-check-cfg=cfg(clone3)");
    let var = |name| std::env::var(name).unwrap_or_default();
    let (os, arch) = (var("CARGO_CFG_TARGET_OS"), var("CARGO_CFG_TARGET_ARCH"));
    // Not x32, whose pointers are 32 bits.
    if os == "linux" && var("CARGO_CFG_TARGET_POINTER_WIDTH") == "64" {
        if matches!(arch.as_str(), "x86_64" | "aarch64" | "riscv64") {
            println!("cargo::rustc-cfg=own_clone");
        }
        if arch == "x86_64" {
            println!("cargo::rustc-cfg=clone3");
        }
    }
}
