//! Checks of the code base itself: module headers and the direction of
//! dependencies described in docs/ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.exists() {
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut files = Vec::new();
    for krate in ["gatehouse", "api", "core", "storage", "grpc"] {
        let root = workspace().join("crates").join(krate);
        rust_files(&root.join("src"), &mut files);
        rust_files(&root.join("tests"), &mut files);
        if root.join("build.rs").exists() {
            files.push(root.join("build.rs"));
        }
    }
    assert!(files.len() > 20);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

/// The `[dependencies]` section of a crate's manifest.
fn dependencies(krate: &str) -> String {
    let manifest =
        std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let start = manifest.find("[dependencies]").expect("has dependencies");
    let rest = &manifest[start + "[dependencies]".len()..];
    rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
}

fn names(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect()
}

#[test]
fn dependency_arrows_point_one_way() {
    let transport = [
        "axum",
        "tonic",
        "prost",
        "hyper",
        "tower",
        "tower-http",
        "http",
    ];
    let engines = ["redb", "tokio-postgres", "sqlx", "foundationdb", "imbl"];

    let core = names(&dependencies("core"));
    for forbidden in transport
        .iter()
        .chain(&engines)
        .chain(&["gatehouse-api", "tokio"])
    {
        assert!(
            !core.contains(&forbidden.to_string()),
            "core depends on {forbidden}"
        );
    }
    let api = names(&dependencies("api"));
    for forbidden in engines.iter().chain(&["gatehouse-storage"]) {
        assert!(
            !api.contains(&forbidden.to_string()),
            "api depends on {forbidden}"
        );
    }
    let storage = names(&dependencies("storage"));
    for forbidden in transport
        .iter()
        .chain(&["gatehouse-core", "gatehouse-api", "serde"])
    {
        assert!(
            !storage.contains(&forbidden.to_string()),
            "storage depends on {forbidden}"
        );
    }
}

/// The non-test part of a source file: comments dropped (they may name any
/// module) and an inline `#[cfg(test)] mod … {` and all after it cut off.
fn non_test_source(text: &str) -> String {
    let mut kept = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if line.trim_start() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            break;
        }
        let code = line.trim_start();
        if code.starts_with("//") {
            kept.push("");
        } else {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// The top-level modules of core that `source` names through `crate::…`,
/// in paths (`crate::usage::…`) and in groups (`use crate::{codec, model::…}`).
fn crate_modules_named(source: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first name of each top-level item of the group.
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        named.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(ident(rest));
        }
    }
    named
}

/// core's top-level modules and, for each, the others its non-test code uses.
fn core_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("crates/core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy();
        if ["lib.rs", "tests.rs", "testing.rs"].contains(&name.as_ref()) {
            continue;
        }
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let source = non_test_source(&std::fs::read_to_string(&file).unwrap());
        let uses = graph.entry(top.clone()).or_default();
        for module in crate_modules_named(&source) {
            if module != top && modules.contains(&module) {
                uses.insert(module);
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one, as the path around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn core_modules_import_downward_only() {
    let graph = core_module_graph();
    // The walk sees the layers it should: a domain uses the model, the
    // services use every domain.
    assert!(graph["tenancy"].contains("model"), "{graph:?}");
    assert!(graph["services"].contains("vaults"), "{graph:?}");
    assert_eq!(
        find_cycle(&graph),
        None,
        "core's modules import in a circle"
    );

    // The check itself finds a cycle, direct or through others.
    let mut circular = graph.clone();
    circular
        .get_mut("model")
        .unwrap()
        .insert("services".to_string());
    assert!(find_cycle(&circular).is_some());
    let named = crate_modules_named(
        "use crate::{codec::{abort, read_all}, model};\nlet x = crate::keyspace::user(id);",
    );
    assert_eq!(
        named,
        ["codec", "keyspace", "model"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

/// The functions of `source` longer than `max` lines, with where they start.
fn long_functions(source: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut long = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let signature = code
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        let Some(name) = signature.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The body opens at the end of the signature; a `;` ends a declaration.
        let mut open = i;
        while open < lines.len()
            && !lines[open].trim_end().ends_with('{')
            && !lines[open].trim_end().ends_with(';')
        {
            open += 1;
        }
        if open >= lines.len() || lines[open].trim_end().ends_with(';') {
            i = open + 1;
            continue;
        }
        let close = (open + 1..lines.len())
            .find(|&j| {
                let l = lines[j];
                l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
            })
            .unwrap_or(lines.len() - 1);
        let length = close - i + 1;
        if length > max {
            long.push((i + 1, name, length));
        }
        i += 1;
    }
    long
}

#[test]
fn source_files_and_functions_stay_readable() {
    let mut files = Vec::new();
    for krate in ["core", "api"] {
        rust_files(
            &workspace().join("crates").join(krate).join("src"),
            &mut files,
        );
    }
    let mut problems = Vec::new();
    for file in &files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let source = non_test_source(&std::fs::read_to_string(file).unwrap());
        let lines = source.lines().count();
        if lines > 800 {
            problems.push(format!("{}: {lines} lines (at most 800)", file.display()));
        }
        for (line, name, length) in long_functions(&source, 120) {
            problems.push(format!(
                "{}:{line}: fn {name} is {length} lines (at most 120)",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let sample =
        "fn short() {\n    1\n}\n\nfn long() {\n".to_string() + &"    x;\n".repeat(130) + "}\n";
    assert_eq!(
        long_functions(&sample, 120),
        vec![(5, "long".to_string(), 132)]
    );
}
