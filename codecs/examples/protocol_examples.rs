//! Prints the worked examples of docs/PROTOCOL.md (annotated hex and the decoded fields as JSON),
//! generated with this codec. With `--write`, replaces the examples section of the document.
//!
//! `cargo run -p paymesh-codecs --example protocol_examples -- --write`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/support/doc_examples.rs"]
mod doc_examples;

use doc_examples::{BEGIN_MARKER, END_MARKER, doc_path, render_examples};

fn main() {
    let examples = render_examples();
    if std::env::args().nth(1).as_deref() != Some("--write") {
        print!("{examples}");
        return;
    }
    let path = doc_path();
    let doc = std::fs::read_to_string(&path).unwrap();
    let begin = doc.find(BEGIN_MARKER).expect("begin marker") + BEGIN_MARKER.len();
    let end = doc.find(END_MARKER).expect("end marker");
    let updated = format!("{}\n\n{examples}{}", &doc[..begin], &doc[end..]);
    std::fs::write(&path, updated).unwrap();
    println!("wrote {}", path.display());
}
