//! README.md is the crate's docs (`#![doc = include_str!("../README.md")]`), so its Rust
//! examples run as doctests. This keeps it so: every code block is either Rust that
//! rustdoc compiles and runs, or says what else it is.

#[test]
fn every_readme_code_block_runs_or_says_what_it_is() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs"))
        .expect("src/lib.rs");
    assert!(
        lib.contains(r#"#![doc = include_str!("../README.md")]"#),
        "src/lib.rs no longer takes its docs from README.md"
    );
    let mut open = false;
    let mut rust_blocks = 0;
    for (n, line) in readme.lines().enumerate() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if open {
            open = false;
            continue;
        }
        open = true;
        // An unlabeled block is Rust to rustdoc; a label that skips running hides a
        // snippet that may no longer compile or work.
        match info.trim() {
            "rust" => rust_blocks += 1,
            // Compiled, not run: it needs a Redis server, and CI runs the same code as
            // examples/forward_to_redis.rs, which starts one.
            "rust,no_run" if block_needs_redis(&readme, n) => {}
            "sh" | "toml" | "text" => {}
            other => panic!(
                "README.md line {}: a code block labeled {other:?}; label it rust (it runs \
                 as a doctest), or sh, toml or text",
                n + 1
            ),
        }
    }
    assert!(!open, "README.md ends inside a code block");
    assert!(
        rust_blocks >= 8,
        "only {rust_blocks} Rust examples in README.md"
    );
}

/// Whether the code block opening at line index `open` is one that forwards to Redis.
fn block_needs_redis(readme: &str, open: usize) -> bool {
    readme
        .lines()
        .skip(open + 1)
        .take_while(|l| !l.trim_start().starts_with("```"))
        .any(|l| l.contains("diskq::forward"))
}
