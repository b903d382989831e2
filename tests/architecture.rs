//! The house rules, checked on the source itself (issue 21): the pure domain
//! (`src/pec/`, `src/flow/`) names no I/O layer, no two files of `src/` import
//! each other even through others, and the number of functions returning
//! `Result<_, String>` may only go down.
//!
//! Plain Rust, no parser crate: the files are read at test time, comments and
//! literals blanked, and `use` trees and inline `a::b::c` paths resolved to the
//! file that defines the module they name.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The most functions in `src/` that may return `Result<_, String>` (lines
/// matching `-> Result<[^;{]*, ?String>`). Lower it when you convert one; a
/// new one must bring a typed error instead.
const STRING_ERROR_CEILING: usize = 17;

/// Modules the pure domain must not name: its callers, the I/O layers.
const FORBIDDEN_MODULES: &[&str] = &["store", "server", "smtp", "imap", "pop3", "relay", "cmd"];

/// External crates and std modules the pure domain must not name.
const FORBIDDEN_EXTERNAL: &[&[&str]] = &[&["tokio"], &["rusqlite"], &["std", "fs"]];

/// Directories of the pure domain; one that does not exist yet is skipped.
const PURE_DIRS: &[&str] = &["pec", "flow"];

#[test]
fn the_pure_domain_names_no_io_layer() {
    let tree = SourceTree::load(&src_dir());
    let bad = pure_domain_violations(&tree);
    assert!(
        bad.is_empty(),
        "src/pec/ and src/flow/ stay pure (no I/O, no tokio, no files, no SQLite, no caller's module); \
         move what they need into the pure domain or pass it in as a parameter:\n  {}",
        bad.join("\n  ")
    );
}

/// Database drivers and the one module of `src/` that may name each: the
/// store's backends are the only code that speaks SQL.
const DRIVERS: &[(&str, &[&str])] = &[
    ("rusqlite", &["store", "sqlite"]),
    ("postgres", &["store", "postgres"]),
    ("postgres_openssl", &["store", "postgres"]),
];

#[test]
fn database_drivers_stay_in_their_backend() {
    let tree = SourceTree::load(&src_dir());
    let bad = driver_violations(&tree);
    assert!(
        bad.is_empty(),
        "a database driver is named outside its backend (src/store/sqlite/, src/store/postgres/); \
         add a typed operation to store::backend::Tx instead:\n  {}",
        bad.join("\n  ")
    );
}

/// Where a file names a driver outside its backend module.
fn driver_violations(tree: &SourceTree) -> Vec<String> {
    let mut bad = Vec::new();
    for file in tree.files.values() {
        for named in names(tree, file) {
            if named.resolved.is_some() {
                continue;
            }
            let Some(first) = named.external.first() else {
                continue;
            };
            for (driver, home) in DRIVERS {
                let home: Vec<String> = home.iter().map(|s| s.to_string()).collect();
                if first == driver && !file.module.starts_with(&home) {
                    bad.push(format!(
                        "{}:{} names {driver} ({})",
                        file.name, named.line, named.written
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn checker_flags_a_driver_outside_its_backend() {
    let tree = SourceTree::from_sources(&[
        ("lib.rs", "pub mod store; pub mod server;"),
        (
            "store/mod.rs",
            "mod sqlite; mod postgres; fn f() { postgres::open(); }",
        ),
        ("store/sqlite/mod.rs", "use rusqlite::Connection;"),
        (
            "store/postgres/mod.rs",
            "use ::postgres::Client; pub fn open() {}",
        ),
        (
            "server/mod.rs",
            "fn f() { let _ = rusqlite::Connection::open(\"\"); }\nuse postgres::Client;",
        ),
    ]);
    assert_eq!(
        driver_violations(&tree),
        [
            "src/server/mod.rs:1 names rusqlite (rusqlite::Connection::open)",
            "src/server/mod.rs:2 names postgres (use postgres::Client)",
        ]
    );
}

#[test]
fn no_file_imports_itself_through_others() {
    let tree = SourceTree::load(&src_dir());
    // A checker that stopped reading the imports would find no cycle either.
    let edges = tree.edges().len();
    assert!(
        edges > 200,
        "only {edges} imports between files found in src/: the checker no longer reads the source"
    );
    let cycles = tree.cycles();
    assert!(
        cycles.is_empty(),
        "import cycles between files of src/ (move the shared piece to a lower module so the \
         arrows go one way):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn string_errors_do_not_grow() {
    let mut found = Vec::new();
    for path in rust_files(&src_dir()) {
        let text = std::fs::read_to_string(&path).expect("read source");
        for (i, line) in text.lines().enumerate() {
            if returns_string_error(line) {
                found.push(format!("{}:{}: {}", display(&path), i + 1, line.trim()));
            }
        }
    }
    let total = found.len();
    assert!(
        total <= STRING_ERROR_CEILING,
        "{total} functions in src/ return Result<_, String>, the ceiling is {STRING_ERROR_CEILING}: \
         give the new one a typed error (an enum with Display and std::error::Error).\n  {}",
        found.join("\n  ")
    );
    if total < STRING_ERROR_CEILING {
        eprintln!(
            "note: {total} functions return Result<_, String>, below the ceiling \
             {STRING_ERROR_CEILING}: lower STRING_ERROR_CEILING in tests/architecture.rs"
        );
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn display(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The issue's measure: the line matches `-> Result<[^;{]*, ?String>`.
fn returns_string_error(line: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find("-> Result<") {
        let after = &rest[at + "-> Result<".len()..];
        let span = &after[..after.find([';', '{']).unwrap_or(after.len())];
        if span.contains(", String>") || span.contains(",String>") {
            return true;
        }
        rest = after;
    }
    false
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The library's files by module path (`src/a/b.rs` and `src/a/b/mod.rs` are
/// both `a::b`). `src/main.rs` is another crate and is left out.
struct SourceTree {
    files: BTreeMap<Vec<String>, SourceFile>,
}

struct SourceFile {
    name: String,
    module: Vec<String>,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// A path named somewhere in a file, as written and as resolved.
struct Named {
    line: usize,
    written: String,
    /// Absolute module path inside the crate, when it names the crate.
    resolved: Option<Vec<String>>,
    /// The segments as written after `use`-alias expansion, for externals.
    external: Vec<String>,
    /// Named inside a `#[cfg(test)]` module.
    in_test: bool,
    /// A `use` naming a module itself: an alias, not yet a dependency.
    module_alias: bool,
}

impl SourceTree {
    fn load(src: &Path) -> SourceTree {
        let mut files = BTreeMap::new();
        for path in rust_files(src) {
            let rel = path.strip_prefix(src).expect("under src");
            if rel == Path::new("main.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let module = module_of(rel);
            files.insert(
                module.clone(),
                SourceFile {
                    name: display(&path),
                    module,
                    tokens: tokenize(&strip(&text)),
                },
            );
        }
        SourceTree { files }
    }

    fn from_sources(sources: &[(&str, &str)]) -> SourceTree {
        let files = sources
            .iter()
            .map(|(rel, text)| {
                let module = module_of(Path::new(rel));
                let file = SourceFile {
                    name: format!("src/{rel}"),
                    module: module.clone(),
                    tokens: tokenize(&strip(text)),
                };
                (module, file)
            })
            .collect();
        SourceTree { files }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.files.contains_key(path)
    }

    /// The file defining the deepest module on `path`.
    fn file_of(&self, path: &[String]) -> Option<&SourceFile> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]))
    }

    /// Edges between files: (from, to) → the first place naming `to`.
    ///
    /// Two kinds of naming are not edges. A file naming its own ancestors
    /// (`use super::Ctx` from `server/worker.rs` to `server/mod.rs`): the
    /// parent declares its children and is the module's front, so that arrow
    /// points back along the containment and is the Rust idiom. And a
    /// `#[cfg(test)]` module: it is not compiled into the daemon.
    fn edges(&self) -> BTreeMap<(String, String), String> {
        let mut edges = BTreeMap::new();
        for file in self.files.values() {
            for named in names(self, file) {
                if named.module_alias || named.in_test {
                    continue;
                }
                let Some(path) = &named.resolved else {
                    continue;
                };
                let Some(target) = self.file_of(path) else {
                    continue;
                };
                if target.name == file.name || file.module.starts_with(&target.module) {
                    continue;
                }
                edges
                    .entry((file.name.clone(), target.name.clone()))
                    .or_insert_with(|| format!("{}:{} {}", file.name, named.line, named.written));
            }
        }
        edges
    }

    /// Every strongly connected set of files, with the edges that bind it and
    /// one cycle through it, as report lines.
    fn cycles(&self) -> Vec<String> {
        let edges = self.edges();
        let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            graph.entry(from).or_default().insert(to);
            graph.entry(to).or_default();
        }
        let mut out = Vec::new();
        for scc in strongly_connected(&graph) {
            if scc.len() < 2 {
                continue;
            }
            let members: BTreeSet<&str> = scc.iter().copied().collect();
            let cycle = shortest_cycle(&graph, &members, scc[0]);
            out.push(format!(
                "cycle among {} files: {}",
                scc.len(),
                cycle.join(" -> ")
            ));
            for ((from, to), at) in &edges {
                if members.contains(from.as_str()) && members.contains(to.as_str()) {
                    out.push(format!("    {from} -> {to}   ({at})"));
                }
            }
        }
        out
    }
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut module: Vec<String> = rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let stem = rel
        .file_stem()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    if stem != "mod" && stem != "lib" {
        module.push(stem);
    }
    module
}

/// What the files of [`PURE_DIRS`] name that they must not.
fn pure_domain_violations(tree: &SourceTree) -> Vec<String> {
    let mut bad = Vec::new();
    for file in tree.files.values() {
        if file
            .module
            .first()
            .is_some_and(|top| PURE_DIRS.contains(&top.as_str()))
        {
            bad.extend(forbidden_names(tree, file));
        }
    }
    bad
}

/// What a pure-domain file names that it must not.
fn forbidden_names(tree: &SourceTree, file: &SourceFile) -> Vec<String> {
    let mut bad = Vec::new();
    for named in names(tree, file) {
        if named.in_test {
            // Unit tests may read their fixtures from disk; the rule is about
            // what the domain does, and test modules are not compiled into it.
            continue;
        }
        let hit = match &named.resolved {
            Some(path) => path
                .first()
                .is_some_and(|m| FORBIDDEN_MODULES.contains(&m.as_str()))
                .then(|| format!("crate::{}", path[0])),
            None => FORBIDDEN_EXTERNAL
                .iter()
                .find(|f| named.external.len() >= f.len() && named.external[..f.len()] == ***f)
                .map(|f| f.join("::")),
        };
        if let Some(what) = hit {
            bad.push(format!(
                "{}:{} names {what} ({})",
                file.name, named.line, named.written
            ));
        }
    }
    bad
}

/// Blank comments and the insides of string and char literals, keeping
/// newlines so line numbers still point at the source.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            let mut hashes = 0;
            while raw_prefix && c.get(i + hashes) == Some(&'#') {
                hashes += 1;
            }
            if raw_prefix && c.get(i + hashes) == Some(&'"') {
                // r"..." / r#"..."#: ends at a quote followed by as many #.
                out.push_str(&word);
                out.push('"');
                i += hashes + 1;
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                        i += 1 + hashes;
                        break;
                    }
                    blank(&mut out, c[i]);
                    i += 1;
                }
                out.push('"');
            } else {
                // b"..", c".." fall through to the string case next round.
                out.push_str(&word);
            }
        } else if ch == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

fn tokenize(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let mut word: String = c[start..i].iter().collect();
            if let Some(raw) = word.strip_prefix("r#") {
                word = raw.to_string();
            }
            if word == "$crate" {
                word = "crate".to_string();
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token {
                tok: Tok::Path,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(t: Option<&Token>, want: &Tok) -> bool {
    t.is_some_and(|t| &t.tok == want)
}

/// One leaf of a `use` tree: the path, the name it binds, a glob or not.
struct UseLeaf {
    path: Vec<String>,
    alias: Option<String>,
    glob: bool,
}

/// Parse the use tree starting at `i` (after `use`); returns the leaves and
/// the index after the closing `;`.
fn parse_use(tokens: &[Token], mut i: usize) -> (Vec<UseLeaf>, usize) {
    let mut leaves = Vec::new();
    if is(tokens.get(i), &Tok::Path) {
        i += 1;
    }
    i = parse_tree(tokens, i, Vec::new(), &mut leaves);
    while i < tokens.len() && !is(tokens.get(i), &Tok::Punct(';')) {
        i += 1;
    }
    (leaves, i + 1)
}

fn parse_tree(
    tokens: &[Token],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<UseLeaf>,
) -> usize {
    loop {
        match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match tokens.get(i).map(|t| &t.tok) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        _ => i = parse_tree(tokens, i, prefix.clone(), out),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push(UseLeaf {
                    path: prefix,
                    alias: None,
                    glob: true,
                });
                return i + 1;
            }
            Some(Tok::Ident(seg)) => {
                if seg == "self" && !prefix.is_empty() {
                    // `a::{self}` binds `a` itself.
                } else {
                    prefix.push(seg.clone());
                }
                i += 1;
                if is(tokens.get(i), &Tok::Path) {
                    i += 1;
                    continue;
                }
                let mut alias = prefix.last().cloned();
                if ident(tokens.get(i)) == Some("as") {
                    alias = ident(tokens.get(i + 1)).map(str::to_string);
                    i += 2;
                }
                out.push(UseLeaf {
                    path: prefix,
                    alias,
                    glob: false,
                });
                return i;
            }
            _ => return i,
        }
    }
}

/// Inline modules open in a file: (module path, brace depth inside it, test).
struct Scope {
    module: Vec<String>,
    depth: usize,
    test: bool,
}

/// Whether the attributes right before `tokens[at]` (a `mod`) hold `cfg(test)`.
fn cfg_test_before(tokens: &[Token], at: usize) -> bool {
    let mut j = at;
    let mut seen = Vec::new();
    while j > 0 {
        j -= 1;
        match &tokens[j].tok {
            Tok::Punct(';') | Tok::Punct('{') | Tok::Punct('}') => break,
            t => seen.push(t.clone()),
        }
    }
    seen.reverse();
    seen.windows(4).any(|w| {
        w[0] == Tok::Ident("cfg".into())
            && w[1] == Tok::Punct('(')
            && w[2] == Tok::Ident("test".into())
            && w[3] == Tok::Punct(')')
    })
}

/// Every path a file names, in `use` trees and inline, resolved where it
/// names the crate.
fn names(tree: &SourceTree, file: &SourceFile) -> Vec<Named> {
    let tokens = &file.tokens;
    // Names bound by `use`, per module scope (inline modules have their own).
    let mut aliases: HashMap<Vec<String>, HashMap<String, Vec<String>>> = HashMap::new();
    let mut scopes = vec![Scope {
        module: file.module.clone(),
        depth: 0,
        test: false,
    }];
    let mut depth: usize = 0;
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let here = scopes.last().expect("file scope");
        let (module, in_test) = (here.module.clone(), here.test);
        match &tokens[i].tok {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if scopes.len() > 1 && scopes.last().is_some_and(|s| s.depth > depth) {
                    scopes.pop();
                }
                i += 1;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(name), true) = (
                    ident(tokens.get(i + 1)),
                    is(tokens.get(i + 2), &Tok::Punct('{')),
                ) {
                    let mut inner = module.clone();
                    inner.push(name.to_string());
                    scopes.push(Scope {
                        module: inner,
                        depth: depth + 1,
                        test: in_test || cfg_test_before(tokens, i),
                    });
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(kw) if kw == "use" => {
                let line = tokens[i].line;
                let (leaves, next) = parse_use(tokens, i + 1);
                for leaf in leaves {
                    let resolved = resolve(tree, &aliases, &module, &leaf.path);
                    let module_alias =
                        !leaf.glob && resolved.as_ref().is_some_and(|p| tree.is_module(p));
                    if let (Some(alias), false) = (&leaf.alias, leaf.glob) {
                        let target = match &resolved {
                            Some(p) => {
                                let mut t = vec!["crate".to_string()];
                                t.extend(p.iter().cloned());
                                t
                            }
                            None => leaf.path.clone(),
                        };
                        aliases
                            .entry(module.clone())
                            .or_default()
                            .insert(alias.clone(), target);
                    }
                    let external = if resolved.is_none() {
                        expand_external(&aliases, &module, &leaf.path)
                    } else {
                        Vec::new()
                    };
                    out.push(Named {
                        line,
                        written: format!(
                            "use {}{}",
                            leaf.path.join("::"),
                            if leaf.glob { "::*" } else { "" }
                        ),
                        resolved,
                        external,
                        in_test,
                        module_alias,
                    });
                }
                i = next;
            }
            Tok::Ident(_) | Tok::Path => {
                // The start of an inline path: `a::b` or `::a::b`, not the
                // middle of one.
                let leading = tokens[i].tok == Tok::Path;
                let prev_is_path_part = i > 0
                    && matches!(
                        tokens[i - 1].tok,
                        Tok::Path | Tok::Ident(_) | Tok::Punct('>')
                    );
                if leading && prev_is_path_part {
                    i += 1;
                    continue;
                }
                let start = if leading { i + 1 } else { i };
                let mut segs = Vec::new();
                let mut j = start;
                while let Some(seg) = ident(tokens.get(j)) {
                    segs.push(seg.to_string());
                    if is(tokens.get(j + 1), &Tok::Path) && ident(tokens.get(j + 2)).is_some() {
                        j += 2;
                    } else {
                        j += 1;
                        break;
                    }
                }
                if segs.len() >= 2 || (leading && !segs.is_empty()) {
                    let line = tokens[i].line;
                    let resolved = if leading {
                        None
                    } else {
                        resolve(tree, &aliases, &module, &segs)
                    };
                    let external = if resolved.is_none() {
                        expand_external(&aliases, &module, &segs)
                    } else {
                        Vec::new()
                    };
                    out.push(Named {
                        line,
                        written: format!("{}{}", if leading { "::" } else { "" }, segs.join("::")),
                        resolved,
                        external,
                        in_test,
                        module_alias: false,
                    });
                    i = j.max(i + 1);
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Look a name up in the `use` bindings of `module` and its enclosing scopes
/// (a `use super::*` in a test module sees the file's imports).
fn lookup<'a>(
    aliases: &'a HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    module: &[String],
    name: &str,
) -> Option<&'a Vec<String>> {
    (0..=module.len())
        .rev()
        .find_map(|n| aliases.get(&module[..n]).and_then(|m| m.get(name)))
}

/// A path that does not name the crate, with a leading alias expanded.
fn expand_external(
    aliases: &HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    module: &[String],
    path: &[String],
) -> Vec<String> {
    match path.first().and_then(|f| lookup(aliases, module, f)) {
        Some(target) if target.first().map(String::as_str) != Some("crate") => {
            let mut out = target.clone();
            out.extend(path[1..].iter().cloned());
            out
        }
        _ => path.to_vec(),
    }
}

/// The absolute crate path a path names from `module`, or None when it names
/// something outside the crate (std, a dependency, a local item).
fn resolve(
    tree: &SourceTree,
    aliases: &HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    module: &[String],
    path: &[String],
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String>;
    let mut rest = &path[1..];
    match first.as_str() {
        "crate" => base = Vec::new(),
        "self" => base = module.to_vec(),
        "super" => {
            base = module.to_vec();
            base.pop();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        name => {
            if let Some(target) = lookup(aliases, module, name) {
                if target.first().map(String::as_str) != Some("crate") {
                    return None;
                }
                base = target[1..].to_vec();
            } else {
                // A bare path to a child module of this one (2018 paths).
                let mut child = module.to_vec();
                child.push(name.to_string());
                if !tree.is_module(&child) {
                    return None;
                }
                base = child;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Tarjan's strongly connected components, each sorted, in name order.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            scc.sort();
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// The shortest way from `start` back to itself inside `members` (BFS).
fn shortest_cycle<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    members: &BTreeSet<&'a str>,
    start: &'a str,
) -> Vec<&'a str> {
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).into_iter().flatten() {
            if !members.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start];
                let mut at = v;
                while at != start {
                    path.push(at);
                    at = parent[at];
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

// The checker checks itself on small made-up trees, so a rule that stops
// seeing what it should fails here rather than passing silently.

#[test]
fn checker_finds_a_cycle_through_use_trees_super_and_inline_paths() {
    let tree = SourceTree::from_sources(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c;"),
        (
            "a/mod.rs",
            "pub mod x;\nuse crate::{b::{Thing, other as o}, c};",
        ),
        (
            "a/x.rs",
            "fn f() { super::helper(); let _: super::super::b::Thing; }",
        ),
        ("b.rs", "fn g() -> crate::c::Item { todo!() }"),
        ("c.rs", "use super::a::x;\nfn h() { x::run(); }"),
    ]);
    let cycles = tree.cycles().join("\n");
    assert!(
        cycles.contains("src/a/x.rs -> src/b.rs -> src/c.rs -> src/a/x.rs"),
        "{cycles}"
    );
    // a/x.rs naming its parent a/mod.rs closes no cycle.
    assert!(!cycles.contains("src/a/mod.rs"), "{cycles}");
    assert!(cycles.contains("(src/c.rs:2 x::run)"), "{cycles}");
}

#[test]
fn checker_ignores_comments_literals_tests_and_module_only_uses() {
    let tree = SourceTree::from_sources(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        (
            "a.rs",
            "// crate::b::f()\n/* crate::b::g() */ const S: &str = \"crate::b::h\";\n\
             const R: &str = r#\"crate::b::\"#; const C: char = '{';\nuse crate::b;\n\
             fn f<'a>(x: &'a str) -> b::Item { todo!() }",
        ),
        (
            "b.rs",
            "pub struct Item;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { crate::a::f(\"\"); }\n}",
        ),
    ]);
    let edges: Vec<_> = tree.edges().into_keys().collect();
    // Only b::Item: the comment, the literals, the bare `use crate::b` and
    // b's test module naming a are no edges.
    assert_eq!(
        edges,
        vec![("src/a.rs".to_string(), "src/b.rs".to_string())]
    );
    assert!(tree.cycles().is_empty(), "{:?}", tree.cycles());
}

#[test]
fn checker_flags_the_pure_domain_naming_io() {
    let tree = SourceTree::from_sources(&[
        ("lib.rs", "pub mod pec; pub mod store;"),
        ("pec/mod.rs", "pub mod x;"),
        (
            "pec/x.rs",
            "// tokio::spawn\nuse std::{fs, io};\nuse super::super::store::log as l;\n\
             fn f() { l::now(); let _ = rusqlite::Connection::open(\"\"); }\n\
             #[cfg(test)]\nmod tests { fn t() { std::fs::read(\"x\"); } }",
        ),
        ("store/mod.rs", "pub mod log;"),
        ("store/log.rs", ""),
        (
            "flow/mod.rs",
            "async fn f() { tokio::task::yield_now().await }",
        ),
        ("server/mod.rs", "use tokio::net::TcpListener;"),
    ]);
    let bad = pure_domain_violations(&tree);
    let expect = [
        "src/flow/mod.rs:1 names tokio (tokio::task::yield_now)",
        "src/pec/x.rs:2 names std::fs (use std::fs)",
        "src/pec/x.rs:3 names crate::store (use super::super::store::log)",
        "src/pec/x.rs:4 names crate::store (l::now)",
        "src/pec/x.rs:4 names rusqlite (rusqlite::Connection::open)",
    ];
    assert_eq!(bad, expect);
}

#[test]
fn string_error_measure_matches_the_issue_regex() {
    assert!(returns_string_error("fn f() -> Result<(), String> {"));
    assert!(returns_string_error(
        "pub fn f(a: u8) -> Result<Vec<u8>,String>;"
    ));
    assert!(returns_string_error(
        "    ) -> Result<HashMap<String, u8>, String> {"
    ));
    assert!(!returns_string_error("fn f() -> Result<String, Error> {"));
    assert!(!returns_string_error(
        "fn f() -> Result<(), Error> { Err(String::new()) }"
    ));
}
