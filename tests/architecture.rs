//! The layering of `src/` stays true: every `crate::` reference points down.
//!
//! Reads the layer list from the crate doc of `src/lib.rs` (its numbered lines, lowest
//! first), maps each file under `src/` to its top-level module (`src/probe/dns/cache.rs` →
//! `probe`), collects every `crate::X` reference (`use` lines, grouped `use crate::{a, b}`
//! forms, inline paths; `mailtls_exporter::X` in the binary) and fails, naming file, line
//! and import, when a module imports a higher layer or a sibling of its own line, when a
//! module is missing from the list, or when a file has more than [`MAX_PRODUCTION_LINES`]
//! production lines (those before its `#[cfg(test)]` module). `super::` stays inside a
//! module and is not checked. Pure file reading: no lab needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file past this has found a seam: split it there.
const MAX_PRODUCTION_LINES: usize = 600;

/// Module name → layer number, from the `N. a, b` lines after "Layers (lowest first)".
fn parse_layers(lib_rs: &str) -> Result<BTreeMap<String, usize>, String> {
    let mut layers = BTreeMap::new();
    let mut in_list = false;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if in_list {
                break;
            }
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("Layers (lowest first)") {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        let Some((num, names)) = doc.split_once(". ") else {
            if layers.is_empty() {
                continue; // the rest of the list's introduction
            }
            break;
        };
        let Ok(num) = num.parse::<usize>() else {
            if layers.is_empty() {
                continue;
            }
            break;
        };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if layers.insert(name.to_string(), num).is_some() {
                return Err(format!("module {name} is listed twice in src/lib.rs"));
            }
        }
    }
    if layers.is_empty() {
        return Err("no layer list (\"Layers (lowest first)\" and numbered lines) in the crate doc of src/lib.rs".into());
    }
    Ok(layers)
}

/// The top-level module a file under `src/` belongs to; `None` for the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_string();
    if parts.next().is_some() {
        return Some(first); // src/probe/dns/cache.rs → probe
    }
    match first.strip_suffix(".rs")? {
        "lib" => None,
        m => Some(m.to_string()),
    }
}

/// The text with comments blanked out (strings kept, line structure kept), so
/// `// see crate::x` in prose is not an import.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_block) = (false, 0usize);
    while let Some(c) = chars.next() {
        if in_block > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_block -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                in_block += 1;
            }
            out.push(if c == '\n' { '\n' } else { ' ' });
            continue;
        }
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            'r' if matches!(chars.peek(), Some('#') | Some('"'))
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                // Raw string r#"…"#: runs to a quote followed by as many hashes.
                out.push(c);
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                    out.push('#');
                }
                if chars.peek() != Some(&'"') {
                    continue; // r#ident
                }
                let closing = format!("\"{}", "#".repeat(hashes));
                let mut body = String::new();
                for n in chars.by_ref() {
                    body.push(n);
                    if body.len() > 1 && body.ends_with(&closing) {
                        break;
                    }
                }
                out.push_str(&body);
            }
            '"' => {
                in_str = true;
                out.push(c);
            }
            '\'' => {
                // A char literal such as '"' must not open a string; lifetimes pass through.
                out.push(c);
                let mut look = chars.clone();
                let (a, b) = (look.next(), look.next());
                if a == Some('\\') {
                    for n in chars.by_ref() {
                        out.push(n);
                        if n == '\'' {
                            break;
                        }
                    }
                } else if b == Some('\'') {
                    if let Some(a) = a {
                        out.push(a);
                        out.push('\'');
                    }
                    chars.next();
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                in_block = 1;
                out.push_str("  ");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every reference to another top-level module: (line, module, the path as written).
fn references(text: &str, crate_name: &str) -> Vec<(usize, String, String)> {
    let code = strip_comments(text);
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].bytes().filter(|&b| b == b'\n').count() + 1;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    for prefix in ["crate::", &format!("{crate_name}::")] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(prefix) {
            let at = from + pos;
            from = at + prefix.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue; // `$crate::`, `foo_crate::`, `a::crate::`
            }
            let rest = &code[from..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first name of each top-level item.
                let mut depth = 0usize;
                let mut item = String::new();
                let mut items = Vec::new();
                for c in group.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            item.push(c);
                        }
                        '}' if depth == 0 => break,
                        '}' => {
                            depth -= 1;
                            item.push(c);
                        }
                        ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                        c => item.push(c),
                    }
                }
                items.push(item);
                for item in items {
                    let item = item.trim();
                    let name: String = item
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        let written = format!(
                            "{prefix}{{{}}}",
                            item.split_whitespace().collect::<Vec<_>>().join(" ")
                        );
                        found.push((line_of(at), name, written));
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if !name.is_empty() {
                    found.push((
                        line_of(at),
                        name,
                        format!("{prefix}{}", path.trim_end_matches(':')),
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

/// Lines before the file's `#[cfg(test)]` module (a `#[cfg(test)]` on a single item
/// elsewhere does not end the count).
fn production_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let starts_tests = |i: usize| {
        lines[i].trim() == "#[cfg(test)]"
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with("mod "))
    };
    (0..lines.len())
        .find(|&i| starts_tests(i))
        .unwrap_or(lines.len())
}

/// One file to check: path for messages, module, text.
struct SourceFile {
    path: String,
    module: Option<String>,
    text: String,
}

/// Every violation, one readable line each.
fn check(layers: &BTreeMap<String, usize>, files: &[SourceFile], crate_name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        let lines = production_lines(&f.text);
        if lines > MAX_PRODUCTION_LINES {
            problems.push(format!(
                "{}: {lines} production lines (more than {MAX_PRODUCTION_LINES}): split it along a seam",
                f.path
            ));
        }
        let Some(module) = &f.module else { continue };
        seen.insert(module.clone());
        let Some(&own) = layers.get(module) else {
            problems.push(format!(
                "{}: module `{module}` is missing from the layer list in src/lib.rs",
                f.path
            ));
            continue;
        };
        for (line, target, written) in references(&f.text, crate_name) {
            if &target == module {
                continue;
            }
            match layers.get(&target) {
                None => problems.push(format!(
                    "{}:{line}: `{written}`: module `{target}` is not in the layer list of src/lib.rs",
                    f.path
                )),
                Some(&l) if l == own => problems.push(format!(
                    "{}:{line}: `{written}`: `{module}` and `{target}` are siblings (layer {own}) and must not import each other",
                    f.path
                )),
                Some(&l) if l > own => problems.push(format!(
                    "{}:{line}: `{written}`: `{module}` (layer {own}) imports `{target}` from a higher layer ({l})",
                    f.path
                )),
                Some(_) => {}
            }
        }
    }
    for listed in layers.keys() {
        if !seen.contains(listed) {
            problems.push(format!(
                "src/lib.rs: the layer list names `{listed}`, but there is no such module under src/"
            ));
        }
    }
    problems
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_import_only_lower_layers_and_files_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs is readable");
    let layers = parse_layers(&lib).unwrap_or_else(|e| panic!("{e}"));
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files: Vec<SourceFile> = paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src/");
            SourceFile {
                path: format!("src/{}", rel.display()),
                module: module_of(rel),
                text: std::fs::read_to_string(p).expect("source file is readable"),
            }
        })
        .collect();
    assert!(
        files.len() > 10,
        "found only {} files under src/",
        files.len()
    );
    let problems = check(&layers, &files, "mailtls_exporter");
    assert!(
        problems.is_empty(),
        "layering (see the list in src/lib.rs) broken:\n  {}",
        problems.join("\n  ")
    );
}

// ---- the checker itself: it must be able to fail ------------------------------------------

const LIB: &str = "//! Intro.\n//!\n//! Layers (lowest first). Modules may import only lower layers:\n//! 1. target\n//! 2. model\n//! 3. probe, metrics\n//! 4. http\n\npub mod x;\n";

fn layers() -> BTreeMap<String, usize> {
    parse_layers(LIB).expect("synthetic list parses")
}

fn file(path: &str, text: &str) -> SourceFile {
    let rel = Path::new(path).strip_prefix("src").expect("src/ path");
    SourceFile {
        path: path.to_string(),
        module: module_of(rel),
        text: text.to_string(),
    }
}

/// Every listed module present, so only the file under test can produce problems.
fn with_all(f: SourceFile) -> Vec<SourceFile> {
    let mut v = vec![f];
    for m in ["target", "model", "probe", "metrics", "http"] {
        v.push(file(&format!("src/{m}.rs"), ""));
    }
    v
}

#[test]
fn layer_list_is_read_from_the_numbered_doc_lines() {
    let l = layers();
    assert_eq!(l["target"], 1);
    assert_eq!(l["probe"], 3);
    assert_eq!(l["metrics"], 3);
    assert_eq!(l["http"], 4);
    assert_eq!(l.len(), 5);
}

#[test]
fn upward_import_is_reported_with_file_line_and_path() {
    let f = file(
        "src/model/report.rs",
        "//! Doc.\n\nuse std::fmt;\nuse crate::http::App;\n",
    );
    let p = check(&layers(), &with_all(f), "mailtls_exporter");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("src/model/report.rs:4: `crate::http::App`"),
        "{}",
        p[0]
    );
    assert!(p[0].contains("higher layer"), "{}", p[0]);
}

#[test]
fn grouped_inline_and_sibling_imports_are_reported() {
    let f = file(
        "src/metrics/families.rs",
        "use crate::{\n    model::report::TargetReport,\n    probe::dns::Dns,\n};\nfn f() { let _ = crate::http::serve; }\n",
    );
    let p = check(&layers(), &with_all(f), "mailtls_exporter");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("src/metrics/families.rs:1: `crate::{probe::dns::Dns}`"),
        "{}",
        p[0]
    );
    assert!(p[0].contains("siblings"), "{}", p[0]);
    assert!(
        p[1].starts_with("src/metrics/families.rs:5: `crate::http::serve`"),
        "{}",
        p[1]
    );
}

#[test]
fn downward_own_super_and_commented_references_pass() {
    let f = file(
        "src/probe/dns/cache.rs",
        "use super::Answer;\nuse crate::probe::mx;\nuse crate::model::dns::Dnssec;\n// crate::http is only prose\nconst S: &str = \"// not a comment\"; use crate::target::DEFAULT_PORT;\n",
    );
    let p = check(&layers(), &with_all(f), "mailtls_exporter");
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn unlisted_module_binary_paths_and_long_files_are_reported() {
    let mut files = with_all(file("src/status.rs", "use crate::model::x;\n"));
    files.push(file(
        "src/main.rs",
        "use mailtls_exporter::{http, target};\n",
    ));
    let long = "fn f() {}\n".repeat(MAX_PRODUCTION_LINES + 1) + "#[cfg(test)]\nmod tests {}\n";
    files.push(file("src/model/big.rs", &long));
    let p = check(&layers(), &files, "mailtls_exporter");
    assert!(
        p.iter().any(|m| m.contains("module `status` is missing")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("module `main` is missing")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("src/model/big.rs: 601 production lines")),
        "{p:?}"
    );
    let short = "fn f() {}\n".repeat(MAX_PRODUCTION_LINES)
        + "#[cfg(test)]\nmod tests {\n"
        + &"\n".repeat(900)
        + "}\n";
    assert!(check(&layers(), &with_all(file("src/model/ok.rs", &short)), "x").is_empty());
    // A test-only item early in the file does not hide the production lines after it.
    let hidden =
        "#[cfg(test)]\nuse std::fmt;\n".to_string() + &"fn f() {}\n".repeat(MAX_PRODUCTION_LINES);
    let p = check(
        &layers(),
        &with_all(file("src/model/hidden.rs", &hidden)),
        "x",
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("src/model/hidden.rs: 602 production lines")),
        "{p:?}"
    );
}
