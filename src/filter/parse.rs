//! Tokenizer and recursive-descent parser. Keywords are upper-case; strings are
//! double-quoted with `\"` and `\\` escapes; field names are `[A-Za-z_][A-Za-z0-9_.:-]*`.

use super::FilterError;

/// Filter syntax tree. `column` fields are 1-based character columns in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `field = "v"` (one value) or `field IN ("a", ...)`: true when any of the row's
    /// values of `field` equals any of `values`.
    Term { field: String, column: usize, values: Vec<String> },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    And,
    Or,
    Not,
    In,
    Eq,
    LParen,
    RParen,
    Comma,
    End,
}

struct Lexed {
    tok: Tok,
    column: usize,
    text: String,
}

fn lex(src: &str) -> Result<Vec<Lexed>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(Lexed { tok, column, text: c.to_string() });
            i += 1;
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => {
                        return Err(FilterError::Syntax {
                            column,
                            token: chars[i..].iter().collect(),
                            message: "unterminated string".into(),
                        });
                    }
                    Some('"') => break,
                    Some('\\') => match chars.get(j + 1) {
                        Some(&e @ ('"' | '\\')) => {
                            s.push(e);
                            j += 2;
                        }
                        other => {
                            return Err(FilterError::Syntax {
                                column: j + 1,
                                token: format!("\\{}", other.map(|c| c.to_string()).unwrap_or_default()),
                                message: "invalid escape (only \\\" and \\\\ are allowed)".into(),
                            });
                        }
                    },
                    Some(&ch) => {
                        s.push(ch);
                        j += 1;
                    }
                }
            }
            out.push(Lexed { tok: Tok::Str(s), column, text: chars[i..=j].iter().collect() });
            i = j + 1;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.' | ':' | '-')) {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            let tok = match word.as_str() {
                "AND" => Tok::And,
                "OR" => Tok::Or,
                "NOT" => Tok::Not,
                "IN" => Tok::In,
                _ => Tok::Ident(word.clone()),
            };
            out.push(Lexed { tok, column, text: word });
            i = j;
            continue;
        }
        return Err(FilterError::Syntax { column, token: c.to_string(), message: "unexpected character".into() });
    }
    out.push(Lexed { tok: Tok::End, column: chars.len() + 1, text: "end of filter".into() });
    Ok(out)
}

/// Deepest nesting of parentheses and `NOT`s, and most conditions, a filter may have: the
/// parser, the compiler and `Drop` recurse over the tree, so bounding it keeps a hostile
/// filter (`((((...` in a server request) from overflowing the stack.
pub const MAX_NESTING: usize = 64;
pub const MAX_TERMS: usize = 1024;

struct Parser {
    toks: Vec<Lexed>,
    pos: usize,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> &Lexed {
        &self.toks[self.pos]
    }
    fn next(&mut self) -> &Lexed {
        let t = &self.toks[self.pos];
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn err(&self, message: &str) -> FilterError {
        let t = self.peek();
        FilterError::Syntax { column: t.column, token: t.text.clone(), message: message.to_string() }
    }
    fn expect(&mut self, tok: Tok, message: &str) -> Result<(), FilterError> {
        if self.peek().tok == tok {
            self.next();
            Ok(())
        } else {
            Err(self.err(message))
        }
    }
    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.and()?;
        while self.peek().tok == Tok::Or {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut e = self.not()?;
        while self.peek().tok == Tok::And {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err(&format!("filter nests `(` and `NOT` deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }
    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.peek().tok == Tok::Not {
            self.enter()?;
            self.next();
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.primary()
    }
    fn string(&mut self) -> Result<String, FilterError> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.next();
                Ok(s)
            }
            _ => Err(self.err("expected a double-quoted string")),
        }
    }
    fn primary(&mut self) -> Result<Expr, FilterError> {
        match self.peek().tok.clone() {
            Tok::LParen => {
                self.enter()?;
                self.next();
                let e = self.or()?;
                self.expect(Tok::RParen, "expected `)`")?;
                self.depth -= 1;
                Ok(e)
            }
            Tok::Ident(field) => {
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(self.err(&format!("filter has more than {MAX_TERMS} conditions")));
                }
                let column = self.peek().column;
                self.next();
                match self.peek().tok {
                    Tok::Eq => {
                        self.next();
                        let v = self.string()?;
                        Ok(Expr::Term { field, column, values: vec![v] })
                    }
                    Tok::In => {
                        self.next();
                        self.expect(Tok::LParen, "expected `(` after IN")?;
                        let mut values = vec![self.string()?];
                        while self.peek().tok == Tok::Comma {
                            self.next();
                            values.push(self.string()?);
                        }
                        self.expect(Tok::RParen, "expected `,` or `)` in IN list")?;
                        Ok(Expr::Term { field, column, values })
                    }
                    _ => Err(self.err("expected `=` or `IN` after field name")),
                }
            }
            Tok::End => Err(self.err("unexpected end of filter; expected a condition")),
            _ => Err(self.err("expected a field name, `NOT` or `(`")),
        }
    }
}

/// Parse a filter. `Ok(None)` for the empty filter (passes everything).
pub fn parse(src: &str) -> Result<Option<Expr>, FilterError> {
    let toks = lex(src)?;
    if toks.len() == 1 {
        return Ok(None);
    }
    let mut p = Parser { toks, pos: 0, depth: 0, terms: 0 };
    let e = p.or()?;
    if p.peek().tok != Tok::End {
        return Err(p.err("expected `AND`, `OR` or end of filter"));
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(f: &str, v: &str) -> Expr {
        Expr::Term { field: f.into(), column: 0, values: vec![v.into()] }
    }
    fn strip(e: Expr) -> Expr {
        match e {
            Expr::Term { field, values, .. } => Expr::Term { field, column: 0, values },
            Expr::And(a, b) => Expr::And(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Or(a, b) => Expr::Or(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Not(a) => Expr::Not(Box::new(strip(*a))),
        }
    }

    #[test]
    fn precedence_not_and_or() {
        let e = strip(parse(r#"architecture = "all" OR section = "libs" AND multi_arch = "same""#).unwrap().unwrap());
        let want = Expr::Or(
            Box::new(t("architecture", "all")),
            Box::new(Expr::And(Box::new(t("section", "libs")), Box::new(t("multi_arch", "same")))),
        );
        assert_eq!(e, want);
        let e = strip(parse(r#"NOT a = "x" AND b = "y""#).unwrap().unwrap());
        assert_eq!(e, Expr::And(Box::new(Expr::Not(Box::new(t("a", "x")))), Box::new(t("b", "y"))));
    }

    #[test]
    fn in_lists_escapes_and_empty() {
        let e = parse(r#"tags IN ("a\"b", "c\\d")"#).unwrap().unwrap();
        assert_eq!(e, Expr::Term { field: "tags".into(), column: 1, values: vec!["a\"b".into(), "c\\d".into()] });
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let ok = format!("{}a = \"x\"{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a = \"x\"{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        assert!(matches!(parse(&deep), Err(FilterError::Syntax { column, .. }) if column == MAX_NESTING + 1));
        assert!(parse(&format!("{}a = \"x\"", "NOT ".repeat(MAX_NESTING + 1))).is_err());
        let terms = |n: usize| vec!["a = \"x\""; n].join(" AND ");
        assert!(parse(&terms(MAX_TERMS)).is_ok());
        assert!(parse(&terms(MAX_TERMS + 1)).is_err());
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            (r#"section = "x" AND"#, 18),
            (r#"section == "x""#, 10),
            (r#"section = "x"#, 11),
            (r#"(section = "x""#, 15),
            (r#"section = x"#, 11),
            (r#"section = "x" and b = "y""#, 15),
            (r#"tags IN ("a" "b")"#, 14),
            (r#"a = "\n""#, 6),
            (r#"a = "x" # "#, 9),
        ];
        for (src, col) in cases {
            match parse(src) {
                Err(FilterError::Syntax { column, .. }) => assert_eq!(column, col, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }
}
