//! `additional_data` of an invite (groups, roles, anything another module put there),
//! kept in the invite index as the Lua literal that Prosody's
//! `util.serialization.deserialize` reads back, so that a validated invite carries a
//! fresh copy of the stored table without a storage read. Identical literals are shared
//! (every invite `prosodyctl mod_invites generate` makes carries `{groups = {}}`).

use std::fmt::Write;

/// Deepest nesting kept; deeper data (or a cycle) is not kept.
pub const MAX_DEPTH: usize = 16;
/// Longest literal kept, bytes.
pub const MAX_LEN: usize = 64 * 1024;

/// A Lua value of the kinds storage can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// `true` / `false`.
    Bool(bool),
    /// An integer (Lua 5.3+ subtype; any whole number on 5.1/5.2).
    Int(i64),
    /// A float.
    Num(f64),
    /// A string (any bytes).
    Str(Vec<u8>),
    /// A table's entries, in traversal order.
    Table(Vec<(Data, Data)>),
}

/// Why a value cannot be kept as a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// Functions, userdata, threads, or nil keys.
    Kind,
    /// A float that has no literal (NaN, infinities).
    Float,
    /// Nested deeper than [`MAX_DEPTH`] (or a cycle).
    Depth,
    /// Longer than [`MAX_LEN`].
    Size,
}

/// The Lua literal for `d` (`{["groups"]={};}`), readable by `deserialize`.
pub fn literal(d: &Data) -> Result<String, Unsupported> {
    let mut out = String::new();
    write(d, &mut out, 0)?;
    if out.len() > MAX_LEN {
        return Err(Unsupported::Size);
    }
    Ok(out)
}

fn write(d: &Data, out: &mut String, depth: usize) -> Result<(), Unsupported> {
    if out.len() > MAX_LEN {
        return Err(Unsupported::Size);
    }
    match d {
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::Int(i) => {
            // i64::MIN has no decimal literal in Lua (the minus is an operator).
            if *i == i64::MIN {
                return Err(Unsupported::Kind);
            }
            let _ = write!(out, "{i}");
        }
        Data::Num(n) => {
            if !n.is_finite() {
                return Err(Unsupported::Float);
            }
            // Debug formatting keeps a fraction or exponent ("1.0", "1e300"), so a
            // float reads back as a float.
            let _ = write!(out, "{n:?}");
        }
        Data::Str(s) => quote(s, out),
        Data::Table(entries) => {
            if depth >= MAX_DEPTH {
                return Err(Unsupported::Depth);
            }
            out.push('{');
            for (k, v) in entries {
                out.push('[');
                write(k, out, depth + 1)?;
                out.push_str("]=");
                write(v, out, depth + 1)?;
                out.push(';');
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A double-quoted Lua string: printable ASCII as is, every other byte as `\ddd`.
fn quote(s: &[u8], out: &mut String) {
    out.push('"');
    for &b in s {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Data {
        Data::Str(x.as_bytes().to_vec())
    }

    #[test]
    fn test_simple() {
        let groups = Data::Table(vec![(s("groups"), Data::Table(vec![]))]);
        assert_eq!(literal(&groups).unwrap(), r#"{["groups"]={};}"#);
    }

    #[test]
    fn test_serialise_scalars_and_lists() {
        let d = Data::Table(vec![
            (
                s("roles"),
                Data::Table(vec![(Data::Int(1), s("prosody:admin"))]),
            ),
            (s("n"), Data::Num(1.0)),
            (s("big"), Data::Num(1e300)),
            (s("ok"), Data::Bool(true)),
            (Data::Int(-3), Data::Int(42)),
        ]);
        assert_eq!(
            literal(&d).unwrap(),
            r#"{["roles"]={[1]="prosody:admin";};["n"]=1.0;["big"]=1e300;["ok"]=true;[-3]=42;}"#
        );
    }

    #[test]
    fn test_serialise_escapes_every_odd_byte() {
        let d = s("a\"b\\c\n\u{e9}\0]]");
        assert_eq!(literal(&d).unwrap(), r#""a\"b\\c\010\195\169\000]]""#);
    }

    #[test]
    fn test_invalid_floats_and_depth() {
        assert_eq!(literal(&Data::Num(f64::NAN)), Err(Unsupported::Float));
        assert_eq!(literal(&Data::Num(f64::INFINITY)), Err(Unsupported::Float));
        assert_eq!(literal(&Data::Int(i64::MIN)), Err(Unsupported::Kind));
        let mut deep = Data::Bool(true);
        for _ in 0..=MAX_DEPTH {
            deep = Data::Table(vec![(Data::Int(1), deep)]);
        }
        assert_eq!(literal(&deep), Err(Unsupported::Depth));
        let long = Data::Table(vec![(s("x"), Data::Str(vec![0; MAX_LEN]))]);
        assert_eq!(literal(&long), Err(Unsupported::Size));
    }
}
