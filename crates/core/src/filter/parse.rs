//! Tokenizer and recursive-descent parser. Keywords are upper- or lower-case (`AND`,
//! `and`); strings are double-quoted with `\"` and `\\` escapes; numbers are JSON-like
//! (`-12`, `3.5`, `1e6`); field names are `[A-Za-z_][A-Za-z0-9_.:-]*`.

use super::FilterError;

/// A literal in a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `"text"`.
    Str(String),
    /// A number as written (parsed against the field's type at compile time, so an
    /// integer stays exact).
    Num(String),
    /// `true` / `false`.
    Bool(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Num(n) => f.write_str(n),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Filter syntax tree. `column` fields are 1-based character columns in the source (of
/// the field name; `at` of the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `field = "v"` (one value) or `field IN ("a", ...)` with string values: true when
    /// any of the row's values of `field` equals any of `values`.
    Term {
        field: String,
        column: usize,
        values: Vec<String>,
    },
    /// `field OP value` (other than `= "string"`).
    Cmp {
        field: String,
        column: usize,
        op: CmpOp,
        value: Value,
        at: usize,
    },
    /// `field [NOT] IN (value, ...)` (other than all-string `IN`).
    In {
        field: String,
        column: usize,
        values: Vec<(Value, usize)>,
        negated: bool,
    },
    /// `field BETWEEN lo AND hi` (inclusive).
    Between {
        field: String,
        column: usize,
        lo: (Value, usize),
        hi: (Value, usize),
    },
    /// `field IS [NOT] NULL`: absent, null or an empty list (`negated`: has a value).
    Null {
        field: String,
        column: usize,
        negated: bool,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    And,
    Or,
    Not,
    In,
    Between,
    Is,
    Null,
    True,
    False,
    Cmp(CmpOp),
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
        let next = chars.get(i + 1).copied();
        let (single, len) = match (c, next) {
            ('(', _) => (Some(Tok::LParen), 1),
            (')', _) => (Some(Tok::RParen), 1),
            (',', _) => (Some(Tok::Comma), 1),
            ('=', Some('=')) => return Err(FilterError::Syntax { column, token: "==".into(), message: "use `=` for equality".into() }),
            ('=', _) => (Some(Tok::Cmp(CmpOp::Eq)), 1),
            ('!', Some('=')) | ('<', Some('>')) => (Some(Tok::Cmp(CmpOp::Ne)), 2),
            ('<', Some('=')) => (Some(Tok::Cmp(CmpOp::Le)), 2),
            ('>', Some('=')) => (Some(Tok::Cmp(CmpOp::Ge)), 2),
            ('<', _) => (Some(Tok::Cmp(CmpOp::Lt)), 1),
            ('>', _) => (Some(Tok::Cmp(CmpOp::Gt)), 1),
            _ => (None, 0),
        };
        if let Some(tok) = single {
            out.push(Lexed { tok, column, text: chars[i..i + len].iter().collect() });
            i += len;
            continue;
        }
        if c.is_ascii_digit()
            || (matches!(c, '-' | '+') && next.is_some_and(|d| d.is_ascii_digit() || d == '.'))
            || (c == '.' && next.is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_ascii_alphanumeric()
                    || chars[j] == '.'
                    || (matches!(chars[j], '+' | '-') && matches!(chars[j - 1], 'e' | 'E')))
            {
                j += 1;
            }
            let text: String = chars[i..j].iter().collect();
            let ok = text.trim_start_matches(['-', '+']).parse::<f64>().is_ok_and(|x| x.is_finite())
                && !text.contains(['x', 'X', 'n', 'N', 'i', 'I']);
            if !ok {
                return Err(FilterError::Syntax { column, token: text, message: "not a number".into() });
            }
            out.push(Lexed { tok: Tok::Num(text.clone()), column, text });
            i = j;
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
                "AND" | "and" => Tok::And,
                "OR" | "or" => Tok::Or,
                "NOT" | "not" => Tok::Not,
                "IN" | "in" => Tok::In,
                "BETWEEN" | "between" => Tok::Between,
                "IS" | "is" => Tok::Is,
                "NULL" | "null" => Tok::Null,
                "TRUE" | "true" => Tok::True,
                "FALSE" | "false" => Tok::False,
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
    /// A literal and its column.
    fn value(&mut self) -> Result<(Value, usize), FilterError> {
        let column = self.peek().column;
        let v = match &self.peek().tok {
            Tok::Str(s) => Value::Str(s.clone()),
            Tok::Num(n) => Value::Num(n.clone()),
            Tok::True => Value::Bool(true),
            Tok::False => Value::Bool(false),
            _ => return Err(self.err("expected a value: a double-quoted string, a number, `true` or `false`")),
        };
        self.next();
        Ok((v, column))
    }
    fn in_list(&mut self) -> Result<Vec<(Value, usize)>, FilterError> {
        self.expect(Tok::LParen, "expected `(` after IN")?;
        let mut values = vec![self.value()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            values.push(self.value()?);
        }
        self.expect(Tok::RParen, "expected `,` or `)` in IN list")?;
        Ok(values)
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
                let strings = |vs: &[(Value, usize)]| {
                    vs.iter().map(|v| if let Value::Str(s) = &v.0 { Some(s.clone()) } else { None }).collect::<Option<Vec<String>>>()
                };
                match self.peek().tok.clone() {
                    Tok::Cmp(op) => {
                        self.next();
                        let (value, at) = self.value()?;
                        match (op, value) {
                            (CmpOp::Eq, Value::Str(v)) => Ok(Expr::Term { field, column, values: vec![v] }),
                            (op, value) => Ok(Expr::Cmp { field, column, op, value, at }),
                        }
                    }
                    Tok::In => {
                        self.next();
                        let values = self.in_list()?;
                        match strings(&values) {
                            Some(values) => Ok(Expr::Term { field, column, values }),
                            None => Ok(Expr::In { field, column, values, negated: false }),
                        }
                    }
                    Tok::Not => {
                        self.next();
                        if self.peek().tok != Tok::In {
                            return Err(self.err("expected `IN` after `NOT` (use `NOT field = value` to negate a condition)"));
                        }
                        self.next();
                        let values = self.in_list()?;
                        Ok(Expr::In { field, column, values, negated: true })
                    }
                    Tok::Between => {
                        self.next();
                        let lo = self.value()?;
                        self.expect(Tok::And, "expected `AND` in BETWEEN")?;
                        let hi = self.value()?;
                        Ok(Expr::Between { field, column, lo, hi })
                    }
                    Tok::Is => {
                        self.next();
                        let negated = self.peek().tok == Tok::Not;
                        if negated {
                            self.next();
                        }
                        self.expect(Tok::Null, "expected `NULL` after IS [NOT]")?;
                        Ok(Expr::Null { field, column, negated })
                    }
                    _ => {
                        Err(self.err("expected an operator after the field name: =, !=, <, <=, >, >=, IN, NOT IN, BETWEEN, IS [NOT] NULL"))
                    }
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
            other @ (Expr::Cmp { .. } | Expr::In { .. } | Expr::Between { .. } | Expr::Null { .. }) => other,
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
    fn typed_operators_and_lower_case_keywords() {
        let e = parse(r#"price < 5 and year between 1990 AND 2000.5 or NOT in_stock = true"#).unwrap().unwrap();
        let want = Expr::Or(
            Box::new(Expr::And(
                Box::new(Expr::Cmp { field: "price".into(), column: 1, op: CmpOp::Lt, value: Value::Num("5".into()), at: 9 }),
                Box::new(Expr::Between {
                    field: "year".into(),
                    column: 15,
                    lo: (Value::Num("1990".into()), 28),
                    hi: (Value::Num("2000.5".into()), 37),
                }),
            )),
            Box::new(Expr::Not(Box::new(Expr::Cmp {
                field: "in_stock".into(),
                column: 51,
                op: CmpOp::Eq,
                value: Value::Bool(true),
                at: 62,
            }))),
        );
        assert_eq!(e, want);
        let e = parse(r#"c != "x""#).unwrap().unwrap();
        assert!(matches!(e, Expr::Cmp { op: CmpOp::Ne, value: Value::Str(ref s), .. } if s == "x"));
        let e = parse(r#"c <> -1e3"#).unwrap().unwrap();
        assert!(matches!(e, Expr::Cmp { op: CmpOp::Ne, value: Value::Num(ref s), .. } if s == "-1e3"));
        for (src, op) in [("a <= 1", CmpOp::Le), ("a >= 1", CmpOp::Ge), ("a > 1", CmpOp::Gt), ("a = 1", CmpOp::Eq)] {
            assert!(matches!(parse(src).unwrap().unwrap(), Expr::Cmp { op: o, .. } if o == op), "{src}");
        }
        assert!(matches!(parse(r#"a NOT IN (1, "x")"#).unwrap().unwrap(), Expr::In { negated: true, ref values, .. } if values.len() == 2));
        assert!(matches!(parse("a in (1, 2)").unwrap().unwrap(), Expr::In { negated: false, .. }));
        assert!(matches!(parse(r#"a IN ("p", "q")"#).unwrap().unwrap(), Expr::Term { ref values, .. } if values.len() == 2));
        assert!(matches!(parse("a is null").unwrap().unwrap(), Expr::Null { negated: false, .. }));
        assert!(matches!(parse("a IS NOT NULL").unwrap().unwrap(), Expr::Null { negated: true, .. }));
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
            (r#"section == "x""#, 9),
            (r#"section = "x"#, 11),
            (r#"(section = "x""#, 15),
            (r#"section = x"#, 11),
            (r#"section = "x" And b = "y""#, 15),
            (r#"price < "#, 9),
            (r#"price BETWEEN 1 2"#, 17),
            (r#"price IS NUL"#, 10),
            (r#"price NOT = 3"#, 11),
            (r#"price < 1.2.3"#, 9),
            (r#"price ~ 3"#, 7),
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
