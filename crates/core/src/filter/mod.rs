//! The filter language (DESIGN.md "Filter language"; grammar in README.md):
//!
//! ```text
//! expr    := or
//! or      := and ("OR" and)*
//! and     := not ("AND" not)*
//! not     := "NOT" not | primary
//! primary := "(" expr ")" | FIELD cmp VALUE | FIELD ["NOT"] "IN" "(" VALUE ("," VALUE)* ")"
//!          | FIELD "BETWEEN" VALUE "AND" VALUE | FIELD "IS" ["NOT"] "NULL"
//! cmp     := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//! VALUE   := STRING | NUMBER | "true" | "false"
//! ```
//!
//! Keywords in upper or lower case. SQL semantics: a row without the field matches no
//! comparison (`!=` and `NOT IN` included; `NOT f = v` does match it); a multi-valued
//! field matches `=`/`IN` when any value does, and `!=`/`NOT IN` when it has values and
//! none of them is listed.
//!
//! [`parse`] gives an [`Expr`] (errors carry the 1-based column of the offending token);
//! [`Filter::compile`] resolves it against an index's [`Schema`](crate::model::Schema)
//! into a [`Plan`]: a postfix program that every backend evaluates two ways, over Bloom
//! bit-plane words (a superset, "maybe") and over the exact attribute values of a row.

pub mod encode;
mod parse;
mod plan;

pub use parse::{CmpOp, Expr, Value, parse};
pub use plan::{BLOOM_BLOCK, Dictionary, MAX_DEPTH, Op, Plan, Term, TypedTest};

/// A filter error: syntax (with 1-based column) or an unknown field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The text does not parse; `column` is 1-based, in characters.
    #[error("filter syntax error at column {column}: {message} (near {token:?})")]
    Syntax {
        /// 1-based character column of the offending token (1 for whole-filter errors).
        column: usize,
        /// The token as written (`end of filter` at the end; empty for whole-filter errors).
        token: String,
        /// What was expected instead.
        message: String,
    },
    /// A field that the index has no attribute for.
    #[error("filter at column {column}: unknown field `{field}` (known fields: {known})")]
    UnknownField {
        /// 1-based character column of the field name.
        column: usize,
        /// The unknown name.
        field: String,
        /// The index's field names, comma-separated.
        known: String,
    },
    /// A value or operator that does not fit the field's type.
    #[error("filter at column {column}: field `{field}` {message}")]
    Type {
        /// 1-based character column of the value or field.
        column: usize,
        /// The field.
        field: String,
        /// What does not fit.
        message: String,
    },
}

/// A parsed and compiled filter, ready for any backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The source text.
    pub text: String,
    /// The compiled postfix program.
    pub plan: Plan,
}

impl Filter {
    /// Parse `text` and compile it against `schema` with Bloom parameters `bloom`.
    /// The empty (or all-whitespace) filter passes every item.
    ///
    /// # Errors
    /// [`FilterError::Syntax`] when `text` does not parse or nests deeper than
    /// [`MAX_DEPTH`]; [`FilterError::UnknownField`] for a field `schema` lacks;
    /// [`FilterError::Type`] for a value or operator that does not fit the field's type.
    pub fn compile<D: Dictionary + ?Sized>(text: &str, schema: &D, bloom: &crate::model::BloomParams) -> Result<Filter, FilterError> {
        let expr = parse(text)?;
        let plan = Plan::compile(expr.as_ref(), schema, bloom)?;
        Ok(Filter { text: text.to_string(), plan })
    }

    /// A filter that passes everything.
    pub fn all() -> Filter {
        Filter { text: String::new(), plan: Plan::all() }
    }
}
