//! docs/HOSTS.md's table of ISO 8583 response codes (field 39) is what the code does: every
//! listed code maps to its row's result code, and every two-digit code not listed maps to 1001.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use paymesh_actors::core::upstream::map_response_code;
use paymesh_codecs::types::ResultCode;

const HOSTS_MD: &str = include_str!("../../docs/HOSTS.md");

/// The rows of the table under `heading`: (field 39 cell, result code cell).
fn rows(heading: &str) -> Vec<(String, String)> {
    let start = HOSTS_MD.find(heading).expect("the heading");
    HOSTS_MD[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_response_code_table_is_the_mapping() {
    let table = rows("### Response codes (field 39)");
    assert!(table.len() >= 9, "{table:?}");
    let mut listed: HashMap<String, ResultCode> = HashMap::new();
    let mut other = None;
    for (codes, result) in &table {
        let number: u16 = result.split_whitespace().next().unwrap().parse().unwrap();
        let expected = ResultCode::from_u16(number);
        let name = result.split_whitespace().nth(1).unwrap();
        assert_eq!(expected.name(), name, "row {codes}: {result}");
        if codes == "any other" {
            other = Some(expected);
            continue;
        }
        for code in codes.split(',').map(str::trim) {
            assert_eq!(code.len(), 2, "{code}");
            assert_eq!(
                map_response_code(code.as_bytes()),
                expected,
                "field 39 {code}: the table says {result}"
            );
            assert!(
                listed.insert(code.to_owned(), expected).is_none(),
                "{code} twice"
            );
        }
    }
    let other = other.expect("an \"any other\" row");
    assert_eq!(other, ResultCode::Declined);
    for n in 0..100 {
        let code = format!("{n:02}");
        if !listed.contains_key(&code) {
            assert_eq!(
                map_response_code(code.as_bytes()),
                other,
                "field 39 {code} is not in the table, so it must map to {other}"
            );
        }
    }
    // Letters and three-character codes (some VANs use them) fall to the default too.
    assert_eq!(map_response_code(b"N7"), other);
    assert_eq!(map_response_code(b"A01"), other);
}
