//! Finite in, finite out: the value checks every vector passes before silica stores or
//! scores it, so that no NaN or ±Inf can reach an artifact, a score or an answer.
//!
//! * Every value must be finite in f32.
//! * A stored value must fit f16 (|x| <= 65504) when it is stored as given (`ip` metric):
//!   `items.embeddings` and the fresh segment keep f16 copies, and an overflowed copy is
//!   ±Inf. (`cosine` vectors are normalized first, so only their norm matters.)
//! * The sum of squares must be finite in f32: cosine normalization and exact re-scoring
//!   compute it (or products bounded by it), and an overflow turns into Inf or NaN.
//!
//! Within these bounds every score is finite: |q·x| <= |q||x| < 1.9e19 · 65504·√D.

use crate::error::{Error, Result};

/// Largest finite f16 magnitude.
pub const F16_MAX: f32 = 65504.0;

/// Why a vector was refused: the column at fault (`None`: the vector as a whole).
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub col: Option<usize>,
    pub value: f32,
    pub reason: String,
}

/// Check one vector. `stored_f16`: its values are stored as given in f16 (see the module docs).
pub fn check_vector(v: &[f32], stored_f16: bool) -> std::result::Result<(), Fault> {
    if let Some(j) = v.iter().position(|x| !x.is_finite()) {
        return Err(Fault { col: Some(j), value: v[j], reason: "is not finite (NaN, Inf or beyond the f32 range)".into() });
    }
    if stored_f16 && let Some(j) = v.iter().position(|x| x.abs() > F16_MAX) {
        return Err(Fault {
            col: Some(j),
            value: v[j],
            reason: format!("{} is beyond the f16 range ±{F16_MAX} of the stored embeddings", v[j]),
        });
    }
    let sq: f64 = v.iter().map(|&x| x as f64 * x as f64).sum();
    if sq > f32::MAX as f64 {
        return Err(Fault {
            col: None,
            value: sq.sqrt() as f32,
            reason: format!("its sum of squares ({sq:.3e}) overflows f32; scale the vector down"),
        });
    }
    Ok(())
}

/// Check every row of a row-major `[rows, d]` matrix; errors name `what`, the row and the
/// column ([`Error::NonFinite`] or [`Error::OutOfRange`]).
pub fn check_rows(data: &[f32], d: usize, stored_f16: bool, what: &str) -> Result<()> {
    for (row, v) in data.chunks(d.max(1)).enumerate() {
        if let Err(f) = check_vector(v, stored_f16) {
            return Err(match f.col {
                Some(col) if !f.value.is_finite() => Error::NonFinite { what: what.into(), row, col, value: f.value },
                col => Error::OutOfRange { what: what.into(), row, col, reason: f.reason },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn limits_are_exact_and_columns_named() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let d = rng.random_range(1..64);
            let mut v: Vec<f32> = (0..d).map(|_| rng.random_range(-F16_MAX..=F16_MAX)).collect();
            assert_eq!(check_vector(&v, true), Ok(()));
            let j = rng.random_range(0..d);
            v[j] = F16_MAX.next_up() * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            assert_eq!(check_vector(&v, true).unwrap_err().col, Some(j));
            assert_eq!(check_vector(&v, false), Ok(()), "queries are not stored in f16");
            v[j] = f32::NAN;
            assert_eq!(check_vector(&v, false).unwrap_err().col, Some(j));
        }
        // Each value is fine in f32, the norm is not.
        let big = vec![3.4e38f32; 8];
        let f = check_vector(&big, false).unwrap_err();
        assert_eq!(f.col, None);
        assert!(f.reason.contains("overflows f32"), "{}", f.reason);
        let ok = vec![(f32::MAX / 9.0).sqrt(); 8];
        assert_eq!(check_vector(&ok, false), Ok(()));
        let e = check_rows(&[1.0, 2.0, 7e4, 0.0], 2, true, "vectors").unwrap_err().to_string();
        assert!(e.contains("vectors: row 1, column 0"), "{e}");
    }
}
