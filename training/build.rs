//! Turns each notebook (`notebooks/*.rs`, top-level statements in jupytext's percent format)
//! into a program: `$OUT_DIR/notebooks/<name>.rs` is the notebook inside `fn main`, opened on
//! the notebook's first line so that line numbers stay those of the notebook (the report places
//! outputs by line). `examples/notebook-*.rs` include these files.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=notebooks");
    println!("cargo:rerun-if-changed=build.rs");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("notebooks");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/notebooks");
    let mut entries: Vec<_> = std::fs::read_dir("notebooks").expect("training/notebooks exists").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let source = std::fs::read_to_string(&path).expect("read notebook");
        let program = format!("fn main() -> anyhow::Result<()> {{ {source}\nOk(())\n}}\n");
        std::fs::write(out.join(path.file_name().expect("file name")), program).expect("write notebook program");
    }
}
