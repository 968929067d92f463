//! The layers point one way (docs/architecture.md#layers): no file of a layer names a module
//! above it. Read from the sources: a path `crate::x` names the module `x`, in a `use` line or
//! in the code (comments, which may say who uses a layer, are not read).

use std::path::{Path, PathBuf};

/// Each layer (a folder or a file under `src/`) and the modules it must never name.
const RULES: &[(&str, &[&str])] = &[
    // Below everything that follows: what more than one layer knows.
    (
        "clock.rs",
        &["customers", "webhooks", "events", "consumers"],
    ),
    ("ids.rs", &["customers", "webhooks", "events", "consumers"]),
    // Counters and gauges that others push into: a sink that reads no layer above it.
    (
        "metrics/",
        &["customers", "webhooks", "events", "consumers", "state"],
    ),
    // The event core: stores and reads events, knows no resource and no consumer.
    (
        "events/",
        &["customers", "webhooks", "consumers", "metrics"],
    ),
    // The resources: above the event core, beside each other, below the consumers.
    ("customers/", &["webhooks", "consumers"]),
    ("webhooks/", &["customers", "consumers"]),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            rust_files(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn no_layer_names_a_module_above_it() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, above) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no Rust file in src/{layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for module in *above {
                let path = format!("crate::{module}");
                for (n, line) in text.lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    let named = line.match_indices(&path).any(|(at, _)| {
                        !line[at + path.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if named {
                        broken.push(format!(
                            "{}:{}: {}",
                            file.strip_prefix(&src).unwrap().display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "a layer names a module above it:\n{}",
        broken.join("\n")
    );
}
