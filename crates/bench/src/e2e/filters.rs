//! Filter classes of the e2e suite: per query, a filter in the filter language whose
//! realised pass fraction (counted exactly over the attribute table) falls in the class's
//! band, `[target / 2, 2 target]` of the items (at least one item).
//!
//! A filter is an AND of clauses (`field = v`, `field IN (..)`, `(tags = a OR tags = b)`,
//! `NOT field = v`) from a per-class list of shapes. Values are picked by their measured
//! frequencies: the first positive clause among values whose count fits globally, each
//! later one among values whose count *within the rows passing so far* fits, so that
//! correlated fields (country, lang, cluster-local tags) are handled exactly. Half of the
//! time a clause prefers the value of the item the query was drawn near (a user's own
//! country or tag), otherwise a random fitting one.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silica_core::error::{Error, Result};
use silica_core::filter::Filter;
use silica_core::model::Index;
use silica_core::model::postings::Postings;

/// The classes: name and target pass fraction (`none`: no filter).
pub const CLASSES: [(&str, f64); 5] = [("none", 1.0), ("20%", 0.2), ("1%", 0.01), ("0.1%", 0.001), ("0.01%", 0.0001)];

/// Tries per (query, class) before the closest attempt is taken (then `in_band` is false).
const ATTEMPTS: usize = 48;

#[derive(Clone, Copy, Debug)]
enum Clause {
    /// `field = v`.
    Eq(&'static str),
    /// `field IN (v1, ..)` with at most this many values (greedy up to the goal).
    In(&'static str, usize),
    /// `(field = a OR field = b)`.
    Either(&'static str),
    /// `NOT field = v` (the value given, or a random one).
    Not(&'static str, Option<&'static str>),
}
use Clause::*;

const BLOCKED: Clause = Not("status", Some("blocked"));

/// Shapes per class (index into [`CLASSES`]); every shape starts with a positive clause.
fn shapes(class: usize) -> &'static [&'static [Clause]] {
    match class {
        1 => &[
            &[In("lang", 60), BLOCKED],
            &[In("country", 200)],
            &[In("age_rating", 5), BLOCKED],
            &[In("lang", 60), Not("age_rating", None)],
        ],
        2 => &[&[Eq("country")], &[Eq("tags"), BLOCKED], &[Eq("lang"), Eq("age_rating")], &[In("country", 3), Not("age_rating", None)]],
        3 => &[&[Eq("country"), Eq("tags")], &[Eq("tags")], &[Eq("lang"), Eq("tags"), BLOCKED], &[Either("tags"), Eq("country")]],
        _ => &[
            &[Eq("tags"), Eq("lang"), Not("age_rating", None)],
            &[Eq("tags")],
            &[Eq("country"), Eq("tags")],
            &[Either("tags"), Eq("country")],
        ],
    }
}

/// Expected share of rows a NOT clause keeps (to aim the clauses before it).
fn keep(c: &Clause) -> f64 {
    match c {
        Not("status", _) => 0.95,
        Not(..) => 0.75,
        _ => 1.0,
    }
}

/// One query's filter of one class.
pub struct Chosen {
    pub filter: Filter,
    /// Sorted rows (of the index) passing it; `None`: every row (class `none`).
    pub pass: Option<Vec<u32>>,
    /// Passing rows / N.
    pub fraction: f64,
    /// Whether `fraction` is in the class's band.
    pub in_band: bool,
}

/// Passing-count band `[lo, hi]` of a target fraction over `n` items.
pub fn band(target: f64, n: usize) -> (usize, usize) {
    let t = target * n as f64;
    let lo = ((t / 2.0).ceil() as usize).max(1);
    (lo, ((2.0 * t).floor() as usize).max(lo))
}

/// Chooses filters over one index.
pub struct Chooser<'a> {
    ix: &'a Index,
    post: Postings,
}

struct Attempt {
    text: String,
    driver: Vec<u32>,
    pass: Vec<u32>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl<'a> Chooser<'a> {
    pub fn new(ix: &'a Index) -> Self {
        Chooser { ix, post: Postings::build(&ix.attrs, &ix.columns) }
    }

    /// Field `name`: (base value id, number of values).
    fn field(&self, name: &str) -> (u32, usize) {
        let s = &self.ix.attrs.schema;
        let f = &s.fields[s.field(name).expect("catalog field")];
        (f.base, f.values.len())
    }

    /// The filter of `class` for the query drawn near sorted row `near`; `seed` and
    /// `query` key its random choices. Errors: the compiled filter disagrees with the
    /// rows counted here (a filter-language bug).
    pub fn choose(&self, class: usize, query: usize, near: usize, seed: u64) -> Result<Chosen> {
        let n = self.ix.len();
        if class == 0 {
            return Ok(Chosen { filter: Filter::all(), pass: None, fraction: 1.0, in_band: true });
        }
        let target = CLASSES[class].1;
        let (lo, hi) = band(target, n);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf117);
        rng.set_stream((class as u64) << 40 | query as u64);
        let list = shapes(class);
        let mut best: Option<(f64, Attempt)> = None;
        for a in 0..ATTEMPTS {
            let Some(at) = self.attempt(list[(query + a) % list.len()], target, (lo, hi), near, &mut rng) else { continue };
            let ok = (lo..=hi).contains(&at.pass.len());
            // In band first, then the closest in log ratio; an empty filter last.
            let miss = if ok {
                0.0
            } else if at.pass.is_empty() {
                f64::INFINITY
            } else {
                (at.pass.len() as f64 / (target * n as f64)).ln().abs()
            };
            if best.as_ref().is_none_or(|b| miss < b.0) {
                best = Some((miss, at));
            }
            if ok {
                break;
            }
        }
        let Some((_, at)) = best else {
            return Err(Error::param("n", format!("no filter of class {} found over {n} items", CLASSES[class].0)));
        };
        let filter = Filter::compile(&at.text, &self.ix.attrs.schema, &self.ix.bloom.params)?;
        // The compiled program must pass exactly the rows counted here (all within the driver).
        let by_plan: Vec<u32> = at.driver.iter().copied().filter(|&r| filter.plan.matches_row(self.ix, r as usize)).collect();
        if by_plan != at.pass {
            return Err(Error::param(
                "filter",
                format!("`{}`: the compiled filter passes {} rows, the attribute table {}", at.text, by_plan.len(), at.pass.len()),
            ));
        }
        let count = at.pass.len();
        Ok(Chosen { filter, fraction: count as f64 / n as f64, in_band: (lo..=hi).contains(&count), pass: Some(at.pass) })
    }

    /// One try of `shape`; `None` when no value fits a clause.
    fn attempt(&self, shape: &[Clause], target: f64, (lo, hi): (usize, usize), near: usize, rng: &mut ChaCha8Rng) -> Option<Attempt> {
        let (ix, n) = (self.ix, self.ix.len());
        let schema = &ix.attrs.schema;
        let last_pos = shape.iter().rposition(|c| !matches!(c, Not(..)))?;
        let mut rows: Option<Vec<u32>> = None;
        let mut driver = Vec::new();
        let mut parts = Vec::new();
        for (i, c) in shape.iter().enumerate() {
            let after: f64 = shape[i + 1..].iter().map(keep).product();
            let (name, (base, len)) = match c {
                Eq(f) | In(f, _) | Either(f) | Not(f, _) => (*f, self.field(f)),
            };
            let value = |id: u32| schema.fields[schema.field(name).expect("field")].values[(id - base) as usize].as_str();
            // Count of each value of the field among the rows passing so far.
            let counts: Vec<usize> = match &rows {
                None => (0..len).map(|j| self.post.rows_of(base + j as u32).len()).collect(),
                Some(rs) => {
                    let mut c = vec![0usize; len];
                    for &r in rs {
                        for &v in ix.attrs.row(r as usize) {
                            if v >= base && v < base + len as u32 {
                                c[(v - base) as usize] += 1;
                            }
                        }
                    }
                    c
                }
            };
            let own: Vec<usize> =
                ix.attrs.row(near).iter().filter(|&&v| v >= base && v < base + len as u32).map(|&v| (v - base) as usize).collect();
            let chosen: Vec<usize> = match c {
                Not(_, Some(v)) => vec![(schema.value_id(schema.field(name)?, v)? - base) as usize],
                Not(_, None) => vec![rng.random_range(0..len)],
                _ => {
                    // Goal count for this clause: the band for the last positive clause,
                    // else 3-50x the target (room for the clauses after it).
                    let t = target * n as f64;
                    let (a, b) = if i == last_pos { (lo as f64 / after, hi as f64 / after) } else { (3.0 * t / after, 50.0 * t / after) };
                    let fits = |lo: f64, hi: f64| -> Vec<usize> {
                        (0..len).filter(|&j| counts[j] > 0 && counts[j] as f64 >= lo && counts[j] as f64 <= hi).collect()
                    };
                    let pick = |cands: &[usize], rng: &mut ChaCha8Rng| -> Option<usize> {
                        let mine: Vec<usize> = own.iter().copied().filter(|j| cands.contains(j)).collect();
                        if !mine.is_empty() && rng.random_bool(0.5) {
                            return Some(mine[rng.random_range(0..mine.len())]);
                        }
                        (!cands.is_empty()).then(|| cands[rng.random_range(0..cands.len())])
                    };
                    match c {
                        Eq(_) => vec![pick(&fits(a, b), rng)?],
                        Either(_) => {
                            let cands = fits(a / 2.0, b / 2.0);
                            let x = pick(&cands, rng)?;
                            let rest: Vec<usize> = cands.into_iter().filter(|&j| j != x).collect();
                            vec![x, *rest.get(rng.random_range(0..rest.len().max(1)))?]
                        }
                        In(_, most) => {
                            let mut order: Vec<usize> = (0..len).filter(|&j| counts[j] > 0).collect();
                            order.shuffle(rng);
                            let (mut sum, mut set) = (0usize, Vec::new());
                            for j in order {
                                if set.len() == *most || sum as f64 >= a {
                                    break;
                                }
                                if (sum + counts[j]) as f64 <= b {
                                    sum += counts[j];
                                    set.push(j);
                                }
                            }
                            if (sum as f64) < a {
                                return None;
                            }
                            set.sort_unstable();
                            set
                        }
                        Not(..) => unreachable!("handled above"),
                    }
                }
            };
            let ids: Vec<u32> = chosen.iter().map(|&j| base + j as u32).collect();
            let has = |r: u32| ix.attrs.row(r as usize).iter().any(|v| ids.contains(v));
            let quoted: Vec<String> = ids.iter().map(|&v| quote(value(v))).collect();
            parts.push(match c {
                Not(..) => format!("NOT {name} = {}", quoted[0]),
                Either(_) => format!("({name} = {} OR {name} = {})", quoted[0], quoted[1]),
                _ if quoted.len() == 1 => format!("{name} = {}", quoted[0]),
                _ => format!("{name} IN ({})", quoted.join(", ")),
            });
            rows = Some(match rows.take() {
                None => {
                    let mut u: Vec<u32> = ids.iter().flat_map(|&v| self.post.rows_of(v).iter().copied()).collect();
                    u.sort_unstable();
                    u.dedup();
                    driver = u.clone();
                    u
                }
                Some(rs) if matches!(c, Not(..)) => rs.into_iter().filter(|&r| !has(r)).collect(),
                Some(rs) => rs.into_iter().filter(|&r| has(r)).collect(),
            });
        }
        Some(Attempt { text: parts.join(" AND "), driver, pass: rows.unwrap_or_default() })
    }
}
