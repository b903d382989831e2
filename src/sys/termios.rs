//! `tcgetattr`/`tcsetattr`: read a password from the terminal without echo.
#![allow(unsafe_code)]

use std::io::{BufRead, Write};

/// Print `prompt` on stderr and read one line from stdin, echo off if stdin
/// is a terminal (restored before returning).
pub fn read_hidden(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    // SAFETY: a zeroed termios is a valid value of this plain C struct.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 and a struct we own; tcgetattr only writes into it.
    let have_tty = unsafe { libc::tcgetattr(0, &mut term) } == 0;
    if have_tty {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: fd 0 and a valid termios read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if have_tty {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &term) };
    }
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
