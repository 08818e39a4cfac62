//! A recommender-like catalog for `silica bench --suite e2e`: clustered unit vectors and
//! Zipf-distributed attributes correlated with the clusters, generated in parallel and
//! deterministically for a seed (ChaCha8 streams keyed by `(seed, purpose, chunk)`, fixed
//! chunks of [`CHUNK`] rows, so the thread count does not change a bit).
//!
//! * Vectors: `C = max(1, N / ITEMS_PER_CENTRE)` centres in groups of 16 (a centre is its
//!   unit group centre plus [`CENTRE_SPREAD`] noise, normalized); an item is a uniformly
//!   chosen centre plus [`ITEM_SPREAD`] noise, normalized (metric ip). Noise norms are
//!   relative to the unit centre (`spread * z / sqrt(D)`, `z` standard normal).
//! * Attributes (fields sorted by name, as the JSONL reader makes them): `age_rating`
//!   (5 values), `country` (200), `id` (one per item), `lang` (60), `status` (`active`
//!   95%, `blocked` 5%), `tags` (multi-valued, 1-6 of 20,000). Country and tags are drawn
//!   half from a global Zipf law and half from a cluster-local one (a Zipf law over a
//!   per-centre rotation of the values), so that a filter's passing items are not spread
//!   evenly over the vector space; `lang` is mostly the country's language.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Zipf};
use rayon::prelude::*;
use silica_core::error::{Error, Result};
use silica_core::model::attributes::AttributeTable;
use silica_core::model::npy::Matrix;
use silica_core::model::{Attributes, FieldSchema, Schema};

/// Rows per generation chunk (one ChaCha8 stream each). Fixed: determinism depends on it.
pub const CHUNK: usize = 4096;
/// Items per mixture centre (on average).
pub const ITEMS_PER_CENTRE: usize = 256;
/// Noise norm of a centre around its group centre.
pub const CENTRE_SPREAD: f32 = 0.8;
/// Noise norm of an item around its centre.
pub const ITEM_SPREAD: f32 = 1.5;
/// Noise norm of a query around the item it is drawn near.
pub const QUERY_SPREAD: f32 = 0.3;

pub const COUNTRIES: usize = 200;
pub const LANGS: usize = 60;
pub const TAGS: usize = 20_000;
/// `age_rating` values in dictionary (sorted) order, with their probabilities.
pub const AGE_RATINGS: [(&str, f64); 5] = [("G", 0.30), ("NC-17", 0.05), ("PG", 0.30), ("PG-13", 0.20), ("R", 0.15)];
/// Share of `status = "blocked"` items.
pub const BLOCKED: f64 = 0.05;

const GROUPS: u64 = 1;
const CENTRES: u64 = 2;
const ITEMS: u64 = 3;
const QUERIES: u64 = 4;

fn stream(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe2e0_0000);
    rng.set_stream(purpose << 48 | index);
    rng
}

/// `out = normalize(c + spread * z / sqrt(D))`.
fn around(rng: &mut ChaCha8Rng, c: &[f32], spread: f32, out: &mut [f32]) {
    let s = spread / (c.len() as f32).sqrt();
    for (o, &m) in out.iter_mut().zip(c) {
        let z: f32 = rng.sample(StandardNormal);
        *o = m + s * z;
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
}

/// A generated catalog in source-row order (what `silica build` would read).
pub struct Catalog {
    /// `[N, D]` unit vectors.
    pub vectors: Matrix,
    pub table: AttributeTable,
}

struct Centre {
    v: Vec<f32>,
    country_shift: usize,
    tag_shift: usize,
}

/// Global value-id bases of the fields, in name order.
struct Bases {
    age: u32,
    country: u32,
    id: u32,
    lang: u32,
    status: u32,
    tags: u32,
}

impl Bases {
    fn new(n: usize) -> Bases {
        let age = 0u32;
        let country = age + AGE_RATINGS.len() as u32;
        let id = country + COUNTRIES as u32;
        let lang = id + n as u32;
        let status = lang + LANGS as u32;
        Bases { age, country, id, lang, status, tags: status + 2 }
    }
}

/// The language most items of a country speak: popular countries map to popular languages.
fn main_lang(country: usize) -> usize {
    country * LANGS / COUNTRIES
}

fn zipf(n: usize, s: f64) -> Zipf<f64> {
    Zipf::new(n as f64, s).expect("n >= 1 and s > 0")
}

/// The parts of a catalog every chunk needs (mixture centres, Zipf laws): chunk `ch`
/// (rows `ch * CHUNK ..`) is then a pure function of `(seed, ch)`, so a catalog can be
/// written chunk by chunk without holding it ([`Generator::chunk`]).
pub struct Generator {
    n: usize,
    dim: usize,
    seed: u64,
    centres: Vec<Centre>,
    b: Bases,
    zc: (Zipf<f64>, Zipf<f64>),
    zl: Zipf<f64>,
    zt: (Zipf<f64>, Zipf<f64>),
    age_cdf: Vec<f64>,
}

/// One generated chunk in source-row order.
pub struct Chunk {
    /// `[rows, D]` unit vectors.
    pub vectors: Vec<f32>,
    /// Global value ids of each row, sorted per row (age, country, id, lang, status, tags...).
    pub values: Vec<u32>,
    /// Values per row.
    pub lens: Vec<u8>,
}

impl Generator {
    /// Errors: `n` or `dim` of 0, `n` beyond the u32 row range.
    pub fn new(n: usize, dim: usize, seed: u64) -> Result<Generator> {
        if n == 0 {
            return Err(Error::param("n", "must be at least 1"));
        }
        if n > (u32::MAX as usize) / 2 {
            return Err(Error::param("n", format!("{n} exceeds the u32 row range")));
        }
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        let c = (n / ITEMS_PER_CENTRE).max(1);
        let g = (c / 16).max(1);
        let zero = vec![0f32; dim];
        let groups: Vec<Vec<f32>> = (0..g)
            .into_par_iter()
            .map(|i| {
                let mut v = vec![0f32; dim];
                around(&mut stream(seed, GROUPS, i as u64), &zero, (dim as f32).sqrt(), &mut v);
                v
            })
            .collect();
        let centres: Vec<Centre> = (0..c)
            .into_par_iter()
            .map(|j| {
                let mut rng = stream(seed, CENTRES, j as u64);
                let mut v = vec![0f32; dim];
                around(&mut rng, &groups[j % g], CENTRE_SPREAD, &mut v);
                Centre { v, country_shift: rng.random_range(0..COUNTRIES), tag_shift: rng.random_range(0..TAGS) }
            })
            .collect();
        let age_cdf: Vec<f64> = AGE_RATINGS
            .iter()
            .scan(0.0, |acc, (_, p)| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        Ok(Generator {
            n,
            dim,
            seed,
            centres,
            b: Bases::new(n),
            zc: (zipf(COUNTRIES, 1.0), zipf(COUNTRIES, 1.6)),
            zl: zipf(LANGS, 1.1),
            zt: (zipf(TAGS, 1.05), zipf(TAGS, 1.2)),
            age_cdf,
        })
    }

    /// Number of chunks (`ceil(N / CHUNK)`).
    pub fn chunks(&self) -> usize {
        self.n.div_ceil(CHUNK)
    }

    /// Rows N.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false (N >= 1).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Chunk `ch`: rows `ch * CHUNK .. min(N, (ch + 1) * CHUNK)`.
    pub fn chunk(&self, ch: usize) -> Chunk {
        let (n, dim, c, b) = (self.n, self.dim, self.centres.len(), &self.b);
        let mut rng = stream(self.seed, ITEMS, ch as u64);
        let rows = CHUNK.min(n - ch * CHUNK);
        let mut vecs = vec![0f32; rows * dim];
        let mut vals = Vec::with_capacity(rows * 9);
        let mut lens = Vec::with_capacity(rows);
        let draw = |rng: &mut ChaCha8Rng, z: &Zipf<f64>| z.sample(rng) as usize - 1;
        for (i, out) in vecs.chunks_mut(dim).enumerate() {
            let centre = &self.centres[rng.random_range(0..c)];
            around(&mut rng, &centre.v, ITEM_SPREAD, out);
            let start = vals.len();
            let u: f64 = rng.random();
            vals.push(b.age + self.age_cdf.iter().position(|&p| u < p).unwrap_or(AGE_RATINGS.len() - 1) as u32);
            let country = if rng.random_bool(0.5) {
                draw(&mut rng, &self.zc.0)
            } else {
                (draw(&mut rng, &self.zc.1) + centre.country_shift) % COUNTRIES
            };
            vals.push(b.country + country as u32);
            vals.push(b.id + (ch * CHUNK + i) as u32);
            let lang = if rng.random_bool(0.7) { main_lang(country) } else { draw(&mut rng, &self.zl) };
            vals.push(b.lang + lang as u32);
            vals.push(b.status + rng.random_bool(BLOCKED) as u32);
            let tags_start = vals.len();
            for _ in 0..rng.random_range(1..=6) {
                let t =
                    if rng.random_bool(0.4) { draw(&mut rng, &self.zt.0) } else { (draw(&mut rng, &self.zt.1) + centre.tag_shift) % TAGS };
                vals.push(b.tags + t as u32);
            }
            vals[tags_start..].sort_unstable();
            let mut w = tags_start + 1;
            for r in tags_start + 1..vals.len() {
                if vals[r] != vals[w - 1] {
                    vals[w] = vals[r];
                    w += 1;
                }
            }
            vals.truncate(w);
            lens.push((vals.len() - start) as u8);
        }
        Chunk { vectors: vecs, values: vals, lens }
    }

    /// The external id of source row `r` (`i` + zero-padded row).
    pub fn id(&self, r: usize) -> String {
        let width = (self.n - 1).to_string().len();
        format!("i{r:0width$}")
    }

    /// Row `r`'s attributes as one JSON Lines object (what `silica build` reads back into
    /// the same table); `vals` are its global value ids as [`Generator::chunk`] gives them.
    pub fn jsonl(&self, r: usize, vals: &[u32], out: &mut String) {
        use std::fmt::Write;
        let b = &self.b;
        let (age, country, lang, status) = (vals[0] - b.age, vals[1] - b.country, vals[3] - b.lang, vals[4] - b.status);
        let _ = write!(
            out,
            "{{\"id\":\"{}\",\"age_rating\":\"{}\",\"country\":\"c{country:03}\",\"lang\":\"l{lang:02}\",\"status\":\"{}\",\"tags\":[",
            self.id(r),
            AGE_RATINGS[age as usize].0,
            if status == 0 { "active" } else { "blocked" }
        );
        for (i, t) in vals[5..].iter().enumerate() {
            let _ = write!(out, "{}\"t{:05}\"", if i == 0 { "" } else { "," }, t - b.tags);
        }
        out.push_str("]}\n");
    }
}

/// Generate `n x dim` items with attributes for `seed`. Errors: `n` or `dim` of 0, `n`
/// beyond the u32 row range.
pub fn generate(n: usize, dim: usize, seed: u64) -> Result<Catalog> {
    let gen_ = Generator::new(n, dim, seed)?;
    let b = &gen_.b;
    // Per chunk: vectors, attribute values (global ids, sorted per row), values per row.
    let chunks: Vec<Chunk> = (0..gen_.chunks()).into_par_iter().map(|ch| gen_.chunk(ch)).collect();

    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u64);
    for l in chunks.iter().flat_map(|c| c.lens.iter()) {
        offsets.push(offsets.last().copied().unwrap_or(0) + *l as u64);
    }
    let values: Vec<u32> = chunks.par_iter().flat_map_iter(|c| c.values.iter().copied()).collect();
    let data: Vec<f32> = chunks.into_par_iter().flat_map_iter(|c| c.vectors.into_iter()).collect();
    let ids: Vec<String> = (0..n).into_par_iter().map(|r| gen_.id(r)).collect();
    let names = |prefix: &str, count: usize, w: usize| (0..count).map(|i| format!("{prefix}{i:0w$}")).collect::<Vec<_>>();
    let field = |name: &str, multi: bool, base: u32, values: Vec<String>| FieldSchema { name: name.into(), multi, base, values };
    let schema = Schema {
        fields: vec![
            field("age_rating", false, b.age, AGE_RATINGS.iter().map(|a| a.0.to_string()).collect()),
            field("country", false, b.country, names("c", COUNTRIES, 3)),
            field("id", false, b.id, ids.clone()),
            field("lang", false, b.lang, names("l", LANGS, 2)),
            field("status", false, b.status, vec!["active".into(), "blocked".into()]),
            field("tags", true, b.tags, names("t", TAGS, 5)),
        ],
        columns: Vec::new(),
    };
    let table = AttributeTable {
        columns: Vec::new(),
        ids,
        attrs: Attributes { schema, offsets: offsets.into(), values: values.into() },
        features: Vec::new(),
        feature_names: Vec::new(),
    };
    Ok(Catalog { vectors: Matrix { rows: n, dim, data, was_f16: false }, table })
}

/// `count` queries `[count, D]`, each a uniformly drawn item plus [`QUERY_SPREAD`] noise,
/// normalized; also the source row each was drawn near. Per-query streams.
pub fn queries(cat: &Catalog, count: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    queries_with(cat.vectors.rows, cat.vectors.dim, count, seed, &|r| cat.vectors.row(r).to_vec())
}

/// The source row query `i` of [`queries`] is drawn near (its stream's first draw).
pub fn query_source(n: usize, i: usize, seed: u64) -> usize {
    stream(seed, QUERIES, i as u64).random_range(0..n)
}

/// [`queries`] of a catalog not held in memory: `row(r)` gives source row `r`'s vector.
pub fn queries_with(n: usize, d: usize, count: usize, seed: u64, row: &(dyn Fn(usize) -> Vec<f32> + Sync)) -> (Vec<f32>, Vec<usize>) {
    let per: Vec<(Vec<f32>, usize)> = (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = stream(seed, QUERIES, i as u64);
            let src = rng.random_range(0..n);
            let mut q = vec![0f32; d];
            around(&mut rng, &row(src), QUERY_SPREAD, &mut q);
            (q, src)
        })
        .collect();
    let rows = per.iter().map(|p| p.1).collect();
    (per.into_iter().flat_map(|p| p.0).collect(), rows)
}
