//! The core crate (`catalogue/`) stays free of frameworks: nothing it depends
//! on, directly or not, is a web, database, messaging or async runtime crate.
//! Its comments promise "pure, no I/O"; this keeps the promise checked.

use std::process::Command;

/// Crates that do I/O or bring a framework, and so may not be under the core.
const FORBIDDEN: [&str; 9] = [
    "tokio",
    "salvo",
    "sea-orm",
    "sqlx",
    "async-nats",
    "ractor",
    "moka",
    "handlebars",
    "hyper",
];

#[test]
fn the_core_crate_depends_on_no_framework_and_no_runtime() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--package",
            "catalogue",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints text");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"catalogue") && crates.contains(&"serde"));
    let found: Vec<&&str> = crates
        .iter()
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    assert!(found.is_empty(), "the core depends on {found:?}");
}
