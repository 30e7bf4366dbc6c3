//! Links the prediction function as a position-dependent executable (`-no-pie`) on Linux.
//!
//! A position-independent executable is relocated by the dynamic loader at every start: tens of
//! thousands of pointer fix-ups in vtables and constant tables (the `.rela.dyn` section),
//! each page they touch copied on write. A Lambda instance pays that on its cold start, on a
//! request's path. Linked at a fixed address, those tables are final in the file and mapped as
//! they are. The cost is that the executable's own image is not placed at a random address (the
//! stack, heap and shared libraries still are). `--features pie` links the usual way; the README
//! (Benchmarks) has both figures.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && std::env::var_os("CARGO_FEATURE_PIE").is_none() {
        println!("cargo::rustc-link-arg-bin=predict=-no-pie");
    }
}
