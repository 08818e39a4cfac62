//! Stage 4, `model` mode: a multi-task MLP over the K0 candidates (SilverTorch §3.4).
//!
//! Input per (query, candidate): `x = [query f32 (D) ‖ item embedding (D, from f16) ‖
//! item features (F)]`, length `2D + F`. Hidden layers are dense + ReLU; T task heads are
//! one dense layer followed by a sigmoid: `p_t = σ(head_t · h + b_t)`. The composite score
//! is `Σ_t w_t · p_t` with the task weights of the request (default: `rerank.task_weights`).
//!
//! Tensor names (safetensors, all F32, weights `[out, in]` row-major as in PyTorch's
//! `nn.Linear`): `rerank.layers.{i}.weight`, `rerank.layers.{i}.bias` for i = 0..,
//! `rerank.heads.weight [T, H]`, `rerank.heads.bias [T]`, `rerank.task_weights [T]`.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// One dense layer `y = W x + b`, `W: [out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Dense {
    fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for o in 0..self.outputs {
            let w = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            let mut acc = self.bias[o];
            for (a, b) in w.iter().zip(x) {
                acc += a * b;
            }
            out.push(acc);
        }
    }
}

/// A multi-task MLP reranker.
#[derive(Clone, Debug, PartialEq)]
pub struct RerankModel {
    /// Hidden layers (ReLU after each).
    pub layers: Vec<Dense>,
    /// Task heads `[T, H]` (sigmoid after).
    pub heads: Dense,
    /// Default task weights `[T]`.
    pub task_weights: Vec<f32>,
}

fn tensor_f32(st: &SafeTensors, name: &str, origin: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |reason: String| Error::Format { path: origin.into(), reason };
    let t = st.tensor(name).map_err(|_| bad(format!("missing tensor `{name}`")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(format!("tensor `{name}` must be F32, is {:?}", t.dtype())));
    }
    let data = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((t.shape().to_vec(), data))
}

impl RerankModel {
    /// Number of tasks T.
    pub fn tasks(&self) -> usize {
        self.heads.outputs
    }
    /// Input width (2D + F).
    pub fn input_dim(&self) -> usize {
        self.layers.first().map(|l| l.inputs).unwrap_or(self.heads.inputs)
    }

    /// Read the `rerank.*` tensors of a safetensors file. `origin` names it in errors.
    pub fn from_safetensors(st: &SafeTensors, origin: &str) -> Result<Option<RerankModel>> {
        let bad = |reason: String| Error::Format { path: origin.into(), reason };
        if st.tensor("rerank.heads.weight").is_err() {
            return Ok(None);
        }
        let dense = |prefix: &str| -> Result<Dense> {
            let (ws, w) = tensor_f32(st, &format!("{prefix}.weight"), origin)?;
            let (bs, b) = tensor_f32(st, &format!("{prefix}.bias"), origin)?;
            if ws.len() != 2 || bs != [ws[0]] {
                return Err(bad(format!("`{prefix}`: weight must be [out, in] and bias [out], got {ws:?} and {bs:?}")));
            }
            Ok(Dense { inputs: ws[1], outputs: ws[0], weight: w, bias: b })
        };
        let mut layers = Vec::new();
        while st.tensor(&format!("rerank.layers.{}.weight", layers.len())).is_ok() {
            layers.push(dense(&format!("rerank.layers.{}", layers.len()))?);
        }
        let heads = dense("rerank.heads")?;
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].outputs != pair[1].inputs {
                return Err(bad(format!("rerank.layers.{} outputs {} but layer {} takes {}", i, pair[0].outputs, i + 1, pair[1].inputs)));
            }
        }
        if let Some(last) = layers.last()
            && last.outputs != heads.inputs
        {
            return Err(bad(format!("last hidden layer outputs {} but heads take {}", last.outputs, heads.inputs)));
        }
        let task_weights = match st.tensor("rerank.task_weights") {
            Ok(_) => tensor_f32(st, "rerank.task_weights", origin)?.1,
            Err(_) => vec![1.0 / heads.outputs as f32; heads.outputs],
        };
        if task_weights.len() != heads.outputs {
            return Err(bad(format!("rerank.task_weights has {} entries for {} tasks", task_weights.len(), heads.outputs)));
        }
        Ok(Some(RerankModel { layers, heads, task_weights }))
    }

    /// Load a model from a standalone safetensors file.
    pub fn load(path: &Path) -> Result<RerankModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let origin = path.display().to_string();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Format { path: path.into(), reason: e.to_string() })?;
        Self::from_safetensors(&st, &origin)?
            .ok_or_else(|| Error::Format { path: path.into(), reason: "no `rerank.heads.weight` tensor".into() })
    }

    /// `(name, shape, f32 data)` of every tensor, for writing.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("rerank.layers.{i}.weight"), vec![l.outputs, l.inputs], l.weight.clone()));
            out.push((format!("rerank.layers.{i}.bias"), vec![l.outputs], l.bias.clone()));
        }
        out.push(("rerank.heads.weight".into(), vec![self.heads.outputs, self.heads.inputs], self.heads.weight.clone()));
        out.push(("rerank.heads.bias".into(), vec![self.heads.outputs], self.heads.bias.clone()));
        out.push(("rerank.task_weights".into(), vec![self.tasks()], self.task_weights.clone()));
        out
    }

    /// Composite score of one input row `x` (length [`input_dim`](Self::input_dim)),
    /// in f32. `weights` has T entries. Also returns nothing else: per-task
    /// probabilities are written to `probs` when given.
    pub fn score(&self, x: &[f32], weights: &[f32], probs: Option<&mut Vec<f32>>) -> f32 {
        let mut a = x.to_vec();
        let mut b = Vec::new();
        for l in &self.layers {
            l.apply(&a, &mut b);
            b.iter_mut().for_each(|v| *v = v.max(0.0));
            std::mem::swap(&mut a, &mut b);
        }
        self.heads.apply(&a, &mut b);
        let mut composite = 0f32;
        for (t, logit) in b.iter_mut().enumerate() {
            *logit = 1.0 / (1.0 + (-*logit).exp());
            composite += weights[t] * *logit;
        }
        if let Some(p) = probs {
            *p = b;
        }
        composite
    }
}
