//! What a user reads stays true: every link to a Markdown file (and its `#anchor`) in the
//! repository resolves, every test path the docs cite exists, and docs/ speak to a user, not to
//! the project's own history (no issue numbers, no "this machine").

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's text files a user reads or that point at docs (build output, the vendored
/// crate and fuzz corpora left out).
fn files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target"
                        | ".git"
                        | "vendor"
                        | ".data"
                        | "corpus"
                        | "artifacts"
                        | "node_modules"
                ) {
                    walk(&path, out);
                }
            } else if name.ends_with(".md")
                || name.ends_with(".rs")
                || name.ends_with(".toml")
                || name.ends_with(".yml")
                || name == "Dockerfile"
                || path.parent().is_some_and(|p| p.ends_with("scripts"))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// The anchors GitHub makes of a Markdown file's headings (code blocks skipped).
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(heading) = (!in_code).then(|| line.strip_prefix('#')).flatten() else {
            continue;
        };
        let text = heading.trim_start_matches('#').trim();
        let slug: String = text
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while !seen.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
    }
    seen
}

/// `path#anchor` (or `path`) targets: Markdown links in .md files, bare `x.md#anchor` anywhere.
fn targets(file: &Path, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let is_markdown = file.extension().is_some_and(|e| e == "md");
    if is_markdown {
        let mut rest = text;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].trim();
            if !target.contains("://") && !target.starts_with("mailto:") && !target.is_empty() {
                out.push(target.to_owned());
            }
        }
    }
    // Bare mentions such as docs/operations.md#tls-to-postgresql in comments and docs.
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(".md#") {
        let at = from + i;
        let start = text[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '/' | '_' | '-')))
            .map_or(0, |s| s + 1);
        let mut end = at + 4;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || matches!(bytes[end], b'-' | b'_'))
        {
            end += 1;
        }
        let target = &text[start..end];
        let preceded_by_url = text[..start].ends_with("://") || text[..start].ends_with('/');
        if !preceded_by_url && !target.starts_with("http") {
            out.push(target.to_owned());
        }
        from = end;
    }
    out
}

#[test]
fn every_link_to_a_markdown_file_and_its_anchor_resolves() {
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in files() {
        // This file's own examples are not links.
        if file.ends_with("tests/api/docs.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for target in targets(&file, &text) {
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                Some(file.clone())
            } else {
                [file.parent().unwrap().join(path), root.join(path)]
                    .into_iter()
                    .find(|p| p.exists())
            };
            let where_ = file.strip_prefix(&root).unwrap().display().to_string();
            let Some(resolved) = resolved else {
                broken.push(format!("{where_}: {target}: no such file"));
                continue;
            };
            checked += 1;
            if let Some(anchor) = anchor {
                if resolved.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&resolved).unwrap_or_default();
                    if !anchors(&text).contains(anchor) {
                        broken.push(format!("{where_}: {target}: no such section"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "the links were not found ({checked})");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_test_paths_the_docs_cite_exist() {
    let root = root();
    let mut missing = Vec::new();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    docs.push(root.join("README.md"));
    for file in docs {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (i, _) in text.match_indices("tests/") {
            if i > 0 && !matches!(text.as_bytes()[i - 1], b'`' | b' ' | b'(' | b'\n') {
                continue;
            }
            let path: String = text[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'))
                .collect();
            let path = path.trim_end_matches('.');
            if !root.join(path).exists() {
                missing.push(format!("{}: {path}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited but absent:\n{}",
        missing.join("\n")
    );
}

/// Issue numbers, rounds of work and "this machine" mean nothing to a user of the service.
#[test]
fn docs_speak_to_a_user_not_of_the_projects_history() {
    let mut found = Vec::new();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(root().join("README.md"));
    for file in docs {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            let bytes = line.as_bytes();
            // `#12` (not PKCS#1, not a heading, not a URL fragment).
            let issue_ref = line.match_indices('#').any(|(i, _)| {
                bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                    && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
            });
            let words = [
                "issue ",
                "round 1",
                "round 2",
                "round 3",
                "this machine",
                "this kind of machine",
            ];
            let said = words.iter().find(|w| {
                lower.match_indices(*w).any(|(i, _)| {
                    // "issue 13" but not "an issue the operator …"
                    !w.starts_with("issue")
                        || lower[i + w.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
            });
            if issue_ref || said.is_some() {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
