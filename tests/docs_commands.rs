//! Every `pecd …` command line that README.md and docs/*.md quote is one
//! the binary understands: its subcommands exist and every flag it names
//! belongs to them, and a command written out in full in a code block
//! parses as a whole. A renamed or removed flag breaks this test, not an
//! operator following the documentation.

use std::path::Path;

use clap::{CommandFactory, Parser};
use pecd::cli::Cli;

/// A command line quoted in a document, and where.
#[derive(Debug)]
struct Quoted {
    place: String,
    /// Shell words after `pecd`.
    words: Vec<String>,
    /// From a code block: a full command, not a mention in prose.
    block: bool,
}

/// Shell words of a line: quotes grouped, a `#` word starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The `pecd` commands of a shell line (`echo x | pecd …`, `cargo run
/// --release -- …`), as the words after `pecd`; a `| head` after one ends it.
fn commands_of(line: &str) -> Vec<Vec<String>> {
    let words = shell_words(&line.replace("\\|", "|"));
    let mut out = Vec::new();
    for segment in words.split(|w| w == "|" || w == "&&" || w == ";") {
        let mut s: Vec<String> = segment.to_vec();
        while s.first().is_some_and(|w| w == "$" || w == "sudo") {
            s.remove(0);
        }
        if s.last().is_some_and(|w| w == "&") {
            s.pop();
        }
        let rest = if s
            .first()
            .is_some_and(|w| w == "pecd" || w.ends_with("/pecd"))
        {
            s[1..].to_vec()
        } else if s.len() >= 4 && s[..4] == ["cargo", "run", "--release", "--"] {
            s[4..].to_vec()
        } else {
            continue;
        };
        out.push(rest);
    }
    out
}

/// Every quoted command of one Markdown file: the lines of code blocks
/// (indented or fenced) and the inline code spans that start with `pecd `.
fn quoted_in(path: &Path) -> Vec<Quoted> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    // The prose: the text with code-block lines emptied, so an offset still
    // tells the line.
    let mut prose = String::new();
    let mut fenced = false;
    let mut prev_blank = true;
    let mut in_indented = false;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        let indented = !fenced && line.starts_with("    ") && (prev_blank || in_indented);
        in_indented = indented || (in_indented && line.trim().is_empty());
        prev_blank = line.trim().is_empty();
        if fence {
            fenced = !fenced;
        } else if fenced || indented {
            for words in commands_of(line) {
                out.push(Quoted {
                    place: format!("{name}:{}", n + 1),
                    words,
                    block: true,
                });
            }
        } else {
            prose.push_str(line);
        }
        prose.push('\n');
    }
    // Inline code may run over a line break.
    let mut at = 0;
    while let Some(open) = prose[at..].find('`').map(|i| i + at) {
        let Some(close) = prose[open + 1..].find('`').map(|i| i + open + 1) else {
            break;
        };
        let span = prose[open + 1..close].replace('\n', " ");
        if span.starts_with("pecd ") || span.starts_with("cargo run --release -- ") {
            let line = prose[..open].matches('\n').count() + 1;
            for words in commands_of(&span) {
                out.push(Quoted {
                    place: format!("{name}:{line}"),
                    words,
                    block: false,
                });
            }
        }
        at = close + 1;
    }
    out
}

fn documents() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// Whether a synopsis word is an elision (`…`, `...`).
fn elision(w: &str) -> bool {
    w == "…" || w == "..."
}

/// The words with synopsis brackets dropped and `...` repetitions
/// removed: `[--ca PEM]...` reads `--ca PEM`.
fn unbracketed(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            w.replace(['[', ']'], "")
                .trim_end_matches("...")
                .trim_end_matches('…')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Check the subcommand path and every flag against the clap tree; the
/// problem if one does not exist. Alternatives (`add|passwd`) are each
/// checked.
fn check_structure(words: &[String]) -> Result<(), String> {
    let mut root = Cli::command();
    root.build();
    let mut current: Vec<clap::Command> = vec![root];
    let mut path = vec!["pecd".to_string()];
    let mut i = 0;
    let words = unbracketed(words);
    while i < words.len() {
        let w = &words[i];
        i += 1;
        if elision(w) {
            continue;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, inline_value) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let arg = current.iter().find_map(|c| {
                c.get_arguments()
                    .find(|a| a.get_long() == Some(name))
                    .cloned()
            });
            let builtin = ["help", "version"].contains(&name);
            match arg {
                Some(a) => {
                    // Its value, unless the synopsis names the flag alone
                    // (`[--id] [--msgid]`): the next flag is checked too.
                    let value_follows = words.get(i).is_some_and(|v| !v.starts_with("--"));
                    if a.get_action().takes_values() && !inline_value && value_follows {
                        i += 1;
                    }
                }
                None if builtin => {}
                None => return Err(format!("`{}` has no flag --{name}", path.join(" "))),
            }
            continue;
        }
        // A word where a subcommand may stand.
        let has_subs = current.iter().any(|c| c.has_subcommands());
        if !has_subs {
            continue; // a positional argument
        }
        let alts: Vec<&str> = w.split('|').collect();
        let mut next = Vec::new();
        for a in &alts {
            match current.iter().find_map(|c| c.find_subcommand(a).cloned()) {
                Some(s) => next.push(s),
                None => {
                    // `pecd log --id …`: a command that takes arguments
                    // as well as subcommands reads this as a positional.
                    let takes_positionals =
                        current.iter().any(|c| c.get_positionals().next().is_some());
                    if takes_positionals && alts.len() == 1 {
                        break;
                    }
                    return Err(format!("`{}` has no subcommand {a:?}", path.join(" ")));
                }
            }
        }
        if next.len() == alts.len() {
            path.push(w.clone());
            current = next;
        }
    }
    Ok(())
}

/// A full command from a code block, placeholders given values of the
/// right type, parsed by the real command line.
fn check_parse(words: &[String]) -> Result<(), String> {
    let had_brackets = words.iter().any(|w| w.contains('['));
    let words = unbracketed(words);
    if words.iter().any(|w| elision(w) || w.contains('|')) {
        return Ok(()); // a synopsis of alternatives or an elision: structure only
    }
    let argv: Vec<String> = std::iter::once("pecd".to_string())
        .chain(words.iter().map(|w| match w.as_str() {
            // Numbers where the command wants one.
            "ID" | "N" => "1".to_string(),
            _ => w.clone(),
        }))
        .collect();
    match Cli::try_parse_from(&argv) {
        Ok(_) => Ok(()),
        // A synopsis may list options that exclude each other
        // (`[--webmail] [--clamd ADDR]`): each exists, which is what it says.
        Err(e) if had_brackets && e.kind() == clap::error::ErrorKind::ArgumentConflict => Ok(()),
        Err(e) => Err(format!("{argv:?}: {}", e.render())),
    }
}

#[test]
fn every_command_line_in_the_docs_parses() {
    let mut quoted = Vec::new();
    for d in documents() {
        quoted.extend(quoted_in(&d));
    }
    // The extractor sees what it must: if it found nothing, it is broken.
    assert!(quoted.len() > 50, "only {} commands found", quoted.len());
    assert!(quoted.iter().filter(|q| q.block).count() > 20);
    let mut problems = Vec::new();
    for q in &quoted {
        // PECD_DOCS_DUMP=1: list what was extracted, to see the extractor work.
        if std::env::var_os("PECD_DOCS_DUMP").is_some() {
            eprintln!(
                "{} {} pecd {}",
                q.place,
                if q.block { "block" } else { "inline" },
                q.words.join(" ")
            );
        }
        let r = check_structure(&q.words).and_then(|()| {
            if q.block {
                check_parse(&q.words)
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            problems.push(format!("{}: pecd {}: {e}", q.place, q.words.join(" ")));
        }
    }
    assert!(
        problems.is_empty(),
        "documented commands pecd does not understand:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_a_renamed_flag_or_subcommand() {
    let w = |s: &str| shell_words(s);
    assert!(check_structure(&w("log --event virus --from 2026-12-01")).is_ok());
    assert!(check_structure(&w("log --kind virus")).is_err());
    assert!(check_structure(&w("queue list --failed")).is_ok());
    assert!(check_structure(&w("queue lst")).is_err());
    assert!(check_structure(&w("user add|passwd|remove")).is_err());
    assert!(check_structure(&w("[--config PATH] serve")).is_ok());
    assert!(check_structure(&w("log verify|export")).is_ok());
    assert!(check_structure(&w("log verify --extract OUT")).is_ok());
    assert!(check_structure(&w("log export --extract OUT")).is_err());
    assert!(check_structure(&w("log [--id] [--msgid] [--json]")).is_ok());
    assert!(
        check_structure(&w("log [--id] [--msgd]")).is_err(),
        "a flag after a bare flag"
    );
    // A full command misses a required argument.
    assert!(check_parse(&w("queue show")).is_err());
    assert!(check_parse(&w("queue show ID --json")).is_ok());
    assert!(check_parse(&w("init DIR --domain D [--name N] [--dev]")).is_ok());
    // Extraction: comments, pipes, `cargo run`, escaped table pipes.
    assert_eq!(
        commands_of("echo secret | cargo run --release -- user add a@b --password-stdin"),
        vec![w("user add a@b --password-stdin")]
    );
    assert_eq!(
        commands_of("pecd verify … | head   # quietly"),
        vec![w("verify …")]
    );
    assert_eq!(
        commands_of(r#"pecd init /etc/pecd --name "Example PEC S.p.A.""#)[0][3],
        "Example PEC S.p.A."
    );
    assert_eq!(
        commands_of("curl -fsS http://127.0.0.1:2980/health"),
        Vec::<Vec<String>>::new()
    );
}
